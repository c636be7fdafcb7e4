//! Copies the pinned Chart.js build from node_modules into static/vendor, where the host embeds it.
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(web, 'node_modules', 'chart.js', 'dist', 'chart.umd.min.js');
const to = join(web, 'static', 'vendor', 'chart.umd.min.js');
mkdirSync(dirname(to), { recursive: true });
copyFileSync(from, to);
console.log(`vendored ${from} -> ${to}`);
