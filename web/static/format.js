//! Human units for the dashboard: bytes, rates, percent, °C, W, MHz, durations and times.

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

// Intl formatters are costly to make and cheap to use: one per decimal count, made once.
const NUMBER_FORMATS = [0, 1, 2, 3].map((d) => new Intl.NumberFormat('en-US', { maximumFractionDigits: d }));
const CLOCK = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

/** A number with at most `digits` decimals, and fewer as it grows. */
export function num(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  const d = a >= 100 ? 0 : a >= 10 ? Math.min(digits, 1) : digits;
  return NUMBER_FORMATS[Math.min(Math.max(d, 0), 3)].format(v);
}

/** Bytes in binary units: `512 B`, `1.5 GiB`. */
export function bytes(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  let i = 0;
  let x = Math.abs(v);
  while (x >= 1024 && i < BYTE_UNITS.length - 1) {
    x /= 1024;
    i += 1;
  }
  return `${v < 0 ? '-' : ''}${num(x, i === 0 ? 0 : 1)} ${BYTE_UNITS[i]}`;
}

/** Bytes per second: `1.2 MiB/s`. */
export function rate(v) {
  return v === null || v === undefined ? '–' : `${bytes(v)}/s`;
}

/** Bits per second in decimal units, as links are sold: `1 Gbit/s`. */
export function bits(v) {
  if (v === null || v === undefined) return '–';
  const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s'];
  let i = 0;
  let x = v;
  while (x >= 1000 && i < units.length - 1) {
    x /= 1000;
    i += 1;
  }
  return `${num(x)} ${units[i]}`;
}

/** A percentage: `42.5 %`. */
export function percent(v) {
  return v === null || v === undefined ? '–' : `${num(v)} %`;
}

/** Degrees Celsius: `61 °C`. */
export function celsius(v) {
  return v === null || v === undefined ? '–' : `${num(v, 0)} °C`;
}

/** Watts: `245.3 W`. */
export function watts(v) {
  return v === null || v === undefined ? '–' : `${num(v)} W`;
}

/** A frequency given in MHz: `800 MHz`, `3.6 GHz`. */
export function mhz(v) {
  if (v === null || v === undefined) return '–';
  return v >= 1000 ? `${num(v / 1000, 2)} GHz` : `${num(v, 0)} MHz`;
}

/** A span of seconds: `45 s`, `12 min`, `3 h 4 min`, `2 d 5 h`. */
export function duration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  if (s < 60) return `${num(s, s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** A wall-clock time from Unix milliseconds, in the browser's zone: `14:03:07`. */
export function clock(ms) {
  return CLOCK.format(ms);
}

/**
 * A time axis tick over a span of `spanMs`: the clock to the second up to 15 minutes (the
 * live window), to the minute up to a day and a half, and the date with the minute beyond.
 */
export function tick(ms, spanMs) {
  if (!(spanMs > 15 * 60e3)) return clock(ms);
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  const hm = `${p(d.getHours())}:${p(d.getMinutes())}`;
  return spanMs > 36 * 3600e3 ? `${p(d.getMonth() + 1)}-${p(d.getDate())} ${hm}` : hm;
}

/** A date and time from Unix milliseconds: `2024-05-01 14:03`. */
export function dateTime(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** How long ago Unix milliseconds were, from `now`: `5 s ago`. */
export function ago(ms, now = Date.now()) {
  return `${duration(Math.max(0, (now - ms) / 1000))} ago`;
}

// Field-name suffixes and what they mean; the first match wins, so longer suffixes come first.
const SUFFIXES = [
  ['_bytes_per_second', 'B/s', rate],
  ['_bits_per_second', 'bit/s', bits],
  ['_packets_per_second', 'pkt/s', (v) => (v === null || v === undefined ? '–' : `${num(v)}/s`)],
  ['_per_second', '/s', (v) => (v === null || v === undefined ? '–' : `${num(v)}/s`)],
  ['_unix_seconds', 'time', (v) => (v ? dateTime(v * 1000) : '–')],
  ['_unix_ms', 'time', (v) => (v ? dateTime(v) : '–')],
  ['_bytes_total', 'bytes', bytes],
  ['_bytes', 'bytes', bytes],
  ['_percent', '%', percent],
  ['_celsius', '°C', celsius],
  ['_watts', 'W', watts],
  ['_mhz', 'MHz', mhz],
  ['_seconds', 's', duration],
  ['_ms', 'ms', (v) => (v === null || v === undefined ? '–' : `${num(v)} ms`)],
];

/** Splits a field name into a readable label and the formatter its unit suffix asks for. */
export function field(key) {
  for (const [suffix, unit, fmt] of SUFFIXES) {
    if (key.endsWith(suffix) && key.length > suffix.length) {
      return { label: words(key.slice(0, -suffix.length)), unit, fmt };
    }
  }
  return { label: words(key), unit: '', fmt: plain };
}

/** `memory_used` -> `memory used`. */
export function words(key) {
  return String(key).replace(/_/g, ' ');
}

/** Any JSON value as short text. */
export function plain(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return num(v, 2);
  if (Array.isArray(v)) return v.length ? v.map(plain).join(', ') : '–';
  if (typeof v === 'object') {
    return Object.entries(v).map(([k, x]) => `${words(k)}: ${plain(x)}`).join(', ');
  }
  return String(v);
}

/** Formats `value` as the field `key` asks for. */
export function byField(key, value) {
  if (Array.isArray(value)) return value.length ? value.map((x) => byField(key, x)).join(', ') : '–';
  return field(key).fmt(value);
}

/** The formatter for a history series unit (`percent`, `bytes`, `celsius`, …). */
export function byUnit(unit) {
  switch (unit) {
    case 'percent': return percent;
    case 'bytes': return bytes;
    case 'bytes_per_second': return rate;
    case 'celsius': return celsius;
    case 'watts': return watts;
    case 'mhz': return mhz;
    case 'seconds': return duration;
    // Counts and load are plain numbers; any other unit is written after the value.
    default: return (v) => (unit && !['load', 'count', 'ratio'].includes(unit) ? `${num(v, 2)} ${unit}` : num(v, 2));
  }
}
