//! Encoding of the values the store keeps: columns of numbers compressed with pco, framed by length.
//!
//! Sealed raw values are kept as `f32` (a relative error of at most 6e-8): it halves what
//! full-precision noise (a CPU percentage) costs on disk. Minute and hour aggregates keep 10
//! mantissa bits (at most 0.05 %, below a pixel of any chart), which roughly halves them again.
//! The journal keeps the `f64` the collector gave until the seal.

use pco::standalone::{simple_compress, simple_decompress};
use pco::ChunkConfig;

/// Most numbers one encoded column may hold (a bound on what a damaged value can ask for).
const MAX_COLUMN_LEN: usize = 4_000_000;

/// One aggregate row: a time bucket's minimum, mean, maximum, last value and sample count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agg {
    /// The bucket's start, milliseconds since the Unix epoch.
    pub ts: i64,
    /// The smallest sample.
    pub min: f64,
    /// The mean of the samples.
    pub avg: f64,
    /// The largest sample.
    pub max: f64,
    /// The sample with the latest timestamp.
    pub last: f64,
    /// How many samples the row summarises.
    pub count: u32,
}

/// One `record` call: a timestamp and the (series id, value) pairs taken at it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    /// Series id and value.
    pub samples: Vec<(u32, f64)>,
}

/// A stored value that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The framing is cut short or inconsistent.
    #[error("damaged value: {0}")]
    Damaged(&'static str),
    /// A column does not decompress.
    #[error("damaged column: {0}")]
    Column(String),
}

fn put_column<T: pco::data_types::Number>(out: &mut Vec<u8>, nums: &[T]) -> Result<(), CodecError> {
    let bytes = simple_compress(nums, &ChunkConfig::default())
        .map_err(|e| CodecError::Column(e.to_string()))?;
    let len = u32::try_from(bytes.len()).map_err(|_| CodecError::Damaged("column too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Reads framed columns off the front of a value.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn column<T: pco::data_types::Number>(&mut self) -> Result<Vec<T>, CodecError> {
        if self.0.len() < 4 {
            return Err(CodecError::Damaged("column length cut short"));
        }
        let (len, rest) = self.0.split_at(4);
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if rest.len() < len {
            return Err(CodecError::Damaged("column cut short"));
        }
        let (col, rest) = rest.split_at(len);
        self.0 = rest;
        let nums: Vec<T> = simple_decompress(col).map_err(|e| CodecError::Column(e.to_string()))?;
        if nums.len() > MAX_COLUMN_LEN {
            return Err(CodecError::Damaged("column too long"));
        }
        Ok(nums)
    }

    fn tag(&mut self, want: u8) -> Result<(), CodecError> {
        match self.0.split_first() {
            Some((&tag, rest)) if tag == want => {
                self.0 = rest;
                Ok(())
            }
            _ => Err(CodecError::Damaged("unknown value tag")),
        }
    }
}

const TAG_RAW: u8 = 1;
const TAG_AGG: u8 = 2;
const TAG_BATCH: u8 = 3;

/// Encodes one series' raw points (timestamp, value).
pub fn encode_raw(points: &[(i64, f64)]) -> Result<Vec<u8>, CodecError> {
    let ts: Vec<i64> = points.iter().map(|p| p.0).collect();
    let vs: Vec<f32> = points.iter().map(|p| p.1 as f32).collect();
    let mut out = vec![TAG_RAW];
    put_column(&mut out, &ts)?;
    put_column(&mut out, &vs)?;
    Ok(out)
}

/// Decodes what [`encode_raw`] wrote.
pub fn decode_raw(bytes: &[u8]) -> Result<Vec<(i64, f64)>, CodecError> {
    let mut r = Reader(bytes);
    r.tag(TAG_RAW)?;
    let ts: Vec<i64> = r.column()?;
    let vs: Vec<f32> = r.column()?;
    if ts.len() != vs.len() {
        return Err(CodecError::Damaged("column lengths differ"));
    }
    Ok(ts.into_iter().zip(vs.into_iter().map(f64::from)).collect())
}

/// Mantissa bits aggregates keep (of `f32`'s 23): a relative error of at most 2^-11 (0.05 %).
const AGG_MANTISSA_BITS: u32 = 10;

/// `v` as `f32` rounded to 10 mantissa bits: the low bits of noise cost most on disk and
/// no chart can show them. Rounding is monotonic, so min ≤ avg ≤ max still holds.
pub fn coarse(v: f64) -> f32 {
    let shift = 23 - AGG_MANTISSA_BITS;
    let bits = (v as f32).to_bits();
    let rounded = f32::from_bits((bits + (1 << (shift - 1))) & !((1 << shift) - 1));
    if rounded.is_finite() {
        rounded
    } else {
        v as f32
    }
}

/// Encodes one series' aggregate rows (values rounded by [`coarse`]).
pub fn encode_aggs(rows: &[Agg]) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![TAG_AGG];
    put_column(&mut out, &rows.iter().map(|r| r.ts).collect::<Vec<_>>())?;
    put_column(
        &mut out,
        &rows.iter().map(|r| coarse(r.min)).collect::<Vec<_>>(),
    )?;
    put_column(
        &mut out,
        &rows.iter().map(|r| coarse(r.avg)).collect::<Vec<_>>(),
    )?;
    put_column(
        &mut out,
        &rows.iter().map(|r| coarse(r.max)).collect::<Vec<_>>(),
    )?;
    put_column(
        &mut out,
        &rows.iter().map(|r| coarse(r.last)).collect::<Vec<_>>(),
    )?;
    put_column(&mut out, &rows.iter().map(|r| r.count).collect::<Vec<_>>())?;
    Ok(out)
}

/// Decodes what [`encode_aggs`] wrote.
pub fn decode_aggs(bytes: &[u8]) -> Result<Vec<Agg>, CodecError> {
    let mut r = Reader(bytes);
    r.tag(TAG_AGG)?;
    let ts: Vec<i64> = r.column()?;
    let min: Vec<f32> = r.column()?;
    let avg: Vec<f32> = r.column()?;
    let max: Vec<f32> = r.column()?;
    let last: Vec<f32> = r.column()?;
    let count: Vec<u32> = r.column()?;
    let n = ts.len();
    if [min.len(), avg.len(), max.len(), last.len(), count.len()]
        .iter()
        .any(|&l| l != n)
    {
        return Err(CodecError::Damaged("column lengths differ"));
    }
    Ok((0..n)
        .map(|i| Agg {
            ts: ts[i],
            min: f64::from(min[i]),
            avg: f64::from(avg[i]),
            max: f64::from(max[i]),
            last: f64::from(last[i]),
            count: count[i],
        })
        .collect())
}

/// Encodes a flush's records (the journal row).
pub fn encode_batch(records: &[Record]) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![TAG_BATCH];
    put_column(&mut out, &records.iter().map(|r| r.ts).collect::<Vec<_>>())?;
    let lens: Vec<u32> = records
        .iter()
        .map(|r| u32::try_from(r.samples.len()).unwrap_or(u32::MAX))
        .collect();
    put_column(&mut out, &lens)?;
    let sids: Vec<u32> = records
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.0))
        .collect();
    let vals: Vec<f64> = records
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.1))
        .collect();
    put_column(&mut out, &sids)?;
    put_column(&mut out, &vals)?;
    Ok(out)
}

/// Decodes what [`encode_batch`] wrote.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Record>, CodecError> {
    let mut r = Reader(bytes);
    r.tag(TAG_BATCH)?;
    let ts: Vec<i64> = r.column()?;
    let lens: Vec<u32> = r.column()?;
    let sids: Vec<u32> = r.column()?;
    let vals: Vec<f64> = r.column()?;
    if ts.len() != lens.len() || sids.len() != vals.len() {
        return Err(CodecError::Damaged("column lengths differ"));
    }
    let total: u64 = lens.iter().map(|&l| u64::from(l)).sum();
    if total != sids.len() as u64 {
        return Err(CodecError::Damaged("record lengths do not add up"));
    }
    let mut pairs = sids.into_iter().zip(vals);
    Ok(ts
        .into_iter()
        .zip(lens)
        .map(|(ts, len)| Record {
            ts,
            samples: pairs.by_ref().take(len as usize).collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the round trip of every value kind.
    #[test]
    fn values_round_trip() {
        let raw = vec![(1_000, 1.5), (6_000, -2.25), (11_000, 1048576.0)];
        assert_eq!(decode_raw(&encode_raw(&raw).unwrap()).unwrap(), raw);
        let aggs = vec![Agg {
            ts: 60_000,
            min: 1.0,
            avg: 2.0,
            max: 3.0,
            last: 2.5,
            count: 12,
        }];
        assert_eq!(decode_aggs(&encode_aggs(&aggs).unwrap()).unwrap(), aggs);
        let noisy = Agg {
            avg: 1.000_123_4,
            ..aggs[0]
        };
        let back = decode_aggs(&encode_aggs(&[noisy]).unwrap()).unwrap();
        assert_eq!(back[0].avg, f64::from(coarse(1.000_123_4)));
        assert_ne!(
            back[0].avg,
            f64::from(1.000_123_4f32),
            "aggregates are stored coarse"
        );
        let batch = vec![
            Record {
                ts: 5,
                samples: vec![(1, 1.0), (2, 2.0)],
            },
            Record {
                ts: 10,
                samples: vec![],
            },
            Record {
                ts: 15,
                samples: vec![(7, 0.5)],
            },
        ];
        assert_eq!(decode_batch(&encode_batch(&batch).unwrap()).unwrap(), batch);
        assert!(decode_raw(&[]).is_err());
    }

    /// Guards the precision aggregates keep: within 2^-11 relative, order kept.
    #[test]
    fn aggregates_keep_their_precision_and_order() {
        let mut prev = f32::NEG_INFINITY;
        for i in 0..10_000 {
            let v = (i as f64 - 5_000.0) * 1.000_123_7e3 / 7.0;
            let c = coarse(v);
            assert!(
                (f64::from(c) - v).abs() <= v.abs() / 2048.0 + 1e-30,
                "{v} -> {c}"
            );
            assert!(c >= prev);
            prev = c;
        }
        assert_eq!(coarse(f64::MAX), f32::INFINITY);
        assert_eq!(coarse(0.0), 0.0);
    }

    /// Guards hostile stored bytes: every truncation and every flipped byte is an error or a
    /// value, never a panic.
    #[test]
    fn damaged_values_are_errors() {
        let raw: Vec<(i64, f64)> = (0..200).map(|i| (i * 5_000, (i as f64).sin())).collect();
        let good = encode_raw(&raw).unwrap();
        for cut in 0..good.len() {
            assert!(decode_raw(&good[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            let _ = decode_raw(&bad);
            let _ = decode_batch(&bad);
            let _ = decode_aggs(&bad);
        }
    }
}
