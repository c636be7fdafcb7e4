//! Small DOM helpers: element creation, and tables and key/value lists that update in place.

/** Creates an element with attributes (`class`, `data-*`, properties) and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'title') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

/** Sets text (and optionally a tooltip) only when it changed, so untouched cells cost nothing. */
export function setText(e, text, title) {
  if (e.textContent !== text) e.textContent = text;
  if (title !== undefined) {
    if (title) {
      if (e.getAttribute('title') !== title) e.setAttribute('title', title);
    } else if (e.hasAttribute('title')) {
      e.removeAttribute('title');
    }
  }
}

/** Compares two cell values for sorting: numbers numerically, the rest as text. */
function compare(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), 'en', { numeric: true });
}

/**
 * A table whose rows are kept by key and whose cells change in place; headers sort on click.
 * `columns`: `[{ id, label, text(row), value?(row), title?(row), cls? , numeric? }]`.
 */
export class Table {
  constructor({ name, columns, key, sortable = true, sort = null, empty = 'nothing to show' }) {
    this.columns = columns;
    this.key = key;
    this.sortable = sortable;
    this.sort = sort; // { id, dir: 1 | -1 }
    this.rows = [];
    this.trs = new Map();
    this.tbody = el('tbody');
    const head = el('tr');
    this.ths = columns.map((c) => {
      const th = el('th', { scope: 'col', class: c.numeric ? 'num' : '', 'data-col': c.id, text: c.label });
      if (sortable) {
        th.tabIndex = 0;
        th.classList.add('sortable');
        th.setAttribute('aria-sort', 'none');
        const go = () => this.sortBy(c.id);
        th.addEventListener('click', go);
        th.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter' || ev.key === ' ') {
            ev.preventDefault();
            go();
          }
        });
      }
      head.append(th);
      return th;
    });
    this.table = el('table', { class: 'grid', 'data-table': name }, el('thead', {}, head), this.tbody);
    this.emptyRow = el('p', { class: 'empty', text: empty, hidden: true });
    this.el = el('div', { class: 'table-wrap' }, this.table, this.emptyRow);
    this.markSort();
  }

  /** Sorts by a column; the same column again flips the direction. */
  sortBy(id) {
    const col = this.columns.find((c) => c.id === id);
    const first = col && col.numeric ? -1 : 1;
    this.sort = this.sort && this.sort.id === id ? { id, dir: -this.sort.dir } : { id, dir: first };
    this.markSort();
    this.update(this.rows);
  }

  markSort() {
    this.ths.forEach((th, i) => {
      const c = this.columns[i];
      const s = this.sort && this.sort.id === c.id ? (this.sort.dir > 0 ? 'ascending' : 'descending') : 'none';
      if (this.sortable) th.setAttribute('aria-sort', s);
    });
  }

  /** Shows `rows`, reusing the row elements of keys already shown. */
  update(rows) {
    this.rows = rows;
    let shown = rows;
    if (this.sort) {
      const col = this.columns.find((c) => c.id === this.sort.id);
      if (col) {
        const val = col.value || col.text;
        // Rows without a value stay last whichever way the column sorts.
        shown = [...rows].sort((a, b) => {
          const x = val(a);
          const y = val(b);
          const nx = x === null || x === undefined;
          const ny = y === null || y === undefined;
          if (nx || ny) return nx === ny ? 0 : nx ? 1 : -1;
          return this.sort.dir * compare(x, y);
        });
      }
    }
    const seen = new Set();
    let prev = null;
    shown.forEach((row, i) => {
      let k = String(this.key ? this.key(row, i) : i);
      // Two rows with one key would share an element; the later one gets its own.
      while (seen.has(k)) k += '#';
      seen.add(k);
      let tr = this.trs.get(k);
      if (!tr) {
        tr = el('tr', { 'data-key': k });
        for (const c of this.columns) tr.append(el('td', { class: [c.numeric ? 'num' : '', c.cls || ''].join(' ').trim(), 'data-col': c.id }));
        this.trs.set(k, tr);
      }
      this.columns.forEach((c, j) => {
        setText(tr.children[j], c.text(row), c.title ? c.title(row) || '' : undefined);
      });
      const want = prev ? prev.nextSibling : this.tbody.firstChild;
      if (want !== tr) this.tbody.insertBefore(tr, want);
      prev = tr;
    });
    for (const [k, tr] of this.trs) {
      if (!seen.has(k)) {
        tr.remove();
        this.trs.delete(k);
      }
    }
    this.emptyRow.hidden = rows.length > 0;
  }
}

/** A two-column list of labelled values, updated in place. */
export class KeyValue {
  constructor(name) {
    this.items = new Map();
    this.el = el('dl', { class: 'kv', 'data-kv': name });
  }

  /** Shows `entries` (`[label, text, title?]`), in order, dropping labels no longer given. */
  update(entries) {
    const seen = new Set();
    let prev = null;
    for (const [label, text, title] of entries) {
      seen.add(label);
      let item = this.items.get(label);
      if (!item) {
        const dt = el('dt', { text: label });
        const dd = el('dd', { 'data-field': label });
        item = { dt, dd };
        this.items.set(label, item);
      }
      setText(item.dd, text, title || '');
      const want = prev ? prev.nextSibling : this.el.firstChild;
      if (want !== item.dt) this.el.insertBefore(item.dt, want);
      if (item.dt.nextSibling !== item.dd) this.el.insertBefore(item.dd, item.dt.nextSibling);
      prev = item.dd;
    }
    for (const [label, item] of this.items) {
      if (!seen.has(label)) {
        item.dt.remove();
        item.dd.remove();
        this.items.delete(label);
      }
    }
  }
}
