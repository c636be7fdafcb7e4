//! Guards the page's pure parts in node: human units, unit suffixes of field names, and series pointers read as the host reads them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as f from '../static/format.js';
import { seriesValues } from '../static/sections.js';

test('sizes, rates and percentages read as a person expects', () => {
  assert.equal(f.bytes(0), '0 B');
  assert.equal(f.bytes(1023), '1,023 B');
  assert.equal(f.bytes(1536), '1.5 KiB');
  assert.equal(f.bytes(24 * 1024 ** 3), '24 GiB');
  assert.equal(f.bytes(null), '–');
  assert.equal(f.rate(2.5 * 1024 ** 2), '2.5 MiB/s');
  assert.equal(f.percent(42.345), '42.3 %');
  assert.equal(f.percent(100), '100 %');
  assert.equal(f.celsius(61.6), '62 °C');
  assert.equal(f.watts(245.33), '245 W');
  assert.equal(f.watts(24.53), '24.5 W');
  assert.equal(f.mhz(800), '800 MHz');
  assert.equal(f.mhz(3600), '3.6 GHz');
  assert.equal(f.bits(1e9), '1 Gbit/s');
  assert.equal(f.duration(42), '42 s');
  assert.equal(f.duration(3 * 3600 + 4 * 60), '3 h 4 min');
  assert.equal(f.duration(2 * 86400 + 5 * 3600), '2 d 5 h');
});

test('a field name says its unit', () => {
  assert.equal(f.byField('memory_total_bytes', 2 * 1024 ** 3), '2 GiB');
  assert.equal(f.byField('used_percent', 12.5), '12.5 %');
  assert.equal(f.byField('read_bytes_per_second', 1024), '1 KiB/s');
  assert.equal(f.byField('speed_bits_per_second', 1e8), '100 Mbit/s');
  assert.equal(f.byField('uptime_seconds', 90), '1 min');
  assert.equal(f.byField('fan_speeds_percent', [30, 40]), '30 %, 40 %');
  assert.equal(f.byField('count', 7), '7');
  assert.equal(f.byField('up', true), 'yes');
  assert.equal(f.field('temperature_celsius').label, 'temperature');
  assert.equal(f.field('boot_time_unix_seconds').unit, 'time');
  // A bare unit word is a name, not a suffix.
  assert.equal(f.field('bytes').label, 'bytes');
});

test('series pointers select the values and labels the host keeps', () => {
  const gpu = { gpus: [{ index: 0, utilization_percent: 40 }, { index: 1, utilization_percent: null }, { index: 2, utilization_percent: 7 }] };
  assert.deepEqual(seriesValues(gpu, '/gpus/*/utilization_percent', 'index'), [['0', 40], ['2', 7]]);
  const disk = { disks: [{ mount_point: '/', used_percent: 50.5 }, { used_percent: 1 }] };
  assert.deepEqual(seriesValues(disk, '/disks/*/used_percent', 'mount_point'), [['/', 50.5], ['1', 1]]);
  assert.deepEqual(seriesValues({ load_average: { one: 0.5 } }, '/load_average/one'), [[null, 0.5]]);
  assert.deepEqual(seriesValues({ a: [1, 2] }, '/a/1'), [[null, 2]]);
  assert.deepEqual(seriesValues({ a: 'x' }, '/a'), []);
  assert.deepEqual(seriesValues({}, '/missing/*/x', 'i'), []);
});
