//! The alerts on the page: a count in the header and an Alerts panel, read from /admin/monitor/alerts.

import { el } from './dom.js';

const POLL_MS = 5000;
const RESOLVED_SHOWN = 20;

/** A duration in words, from milliseconds. */
function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** The words and icon of a severity, so it reads without colour too. */
function badge(a) {
  const icon = a.state === 'resolved' ? '✓' : a.severity === 'critical' ? '✖' : '▲';
  const word = a.state === 'pending' ? `${a.severity}, pending` : a.state === 'resolved' ? 'resolved' : a.severity;
  return el('span', { class: 'alert-badge', 'data-severity': a.severity, 'data-state': a.state },
    el('span', { 'aria-hidden': 'true', text: `${icon} ` }), word);
}

function row(a, now) {
  const when = a.state === 'resolved'
    ? `resolved ${ago(now - a.resolved_unix_ms)} ago, lasted ${ago(a.resolved_unix_ms - a.started_unix_ms)}`
    : a.state === 'firing' ? `firing for ${ago(now - (a.fired_unix_ms ?? a.started_unix_ms))}`
      : `pending for ${ago(now - a.started_unix_ms)}`;
  return el('li', { class: 'alert-row', 'data-severity': a.severity, 'data-state': a.state },
    badge(a),
    el('strong', { text: a.name }),
    a.label ? el('span', { class: 'alert-item', text: a.label }) : null,
    el('span', { class: 'alert-summary', text: a.summary }),
    el('span', { class: 'alert-when', text: when, title: `rule: ${a.rule}` }));
}

function render(view) {
  const count = document.getElementById('alert-count');
  const panel = document.getElementById('alerts');
  if (!count || !panel) return;
  const now = Date.now();
  const firing = view.active.filter((a) => a.state === 'firing');
  const critical = firing.some((a) => a.severity === 'critical');
  count.hidden = false;
  count.dataset.severity = firing.length ? (critical ? 'critical' : 'warning') : 'none';
  count.textContent = firing.length
    ? `${critical ? '✖' : '▲'} ${firing.length} alert${firing.length === 1 ? '' : 's'}`
    : '✓ no alerts';
  count.title = firing.map((a) => `${a.severity}: ${a.summary}`).join('\n') || 'no alert is firing';
  panel.hidden = false;
  const list = panel.querySelector('.alert-list');
  const rows = [...view.active, ...view.resolved.slice(0, RESOLVED_SHOWN)].map((a) => row(a, now));
  if (!rows.length) rows.push(el('li', { class: 'alert-row empty', text: `nothing is wrong (${view.rules} rules watching)` }));
  list.replaceChildren(...rows);
  const sub = panel.querySelector('.sub');
  const failing = (view.notifiers || []).filter((n) => n.failed > 0);
  sub.textContent = `${firing.length} firing, ${view.active.length - firing.length} pending, ${view.resolved.length} resolved recently`
    + (failing.length ? ` · ${failing.length} notifier${failing.length === 1 ? '' : 's'} failing` : '');
  const problems = panel.querySelector('.alert-problems');
  problems.hidden = !view.problems.length;
  problems.textContent = view.problems.join('\n');
}

async function poll() {
  try {
    const r = await fetch('/admin/monitor/alerts', { credentials: 'same-origin', headers: { accept: 'application/json' } });
    if (r.ok) render(await r.json());
  } catch {
    // Offline: the connection indicator already says so; try again on the next round.
  }
  setTimeout(poll, POLL_MS);
}

poll();
