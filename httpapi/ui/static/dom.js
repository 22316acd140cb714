// Small DOM helpers. Text always goes in through textContent: tenant data
// (post-urls, errors, events) is never parsed as HTML.

export const $ = (sel) => document.querySelector(sel);

// el('td', {class: 'num'}, 'text', child, ...)
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = dv;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// A date as local "YYYY-MM-DD HH:MM:SS" (empty for none).
export function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  if (isNaN(d)) return s;
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// How long ago, short ("42s ago").
export function ago(s) {
  if (!s) return '';
  const sec = Math.round((Date.now() - new Date(s).getTime()) / 1000);
  if (isNaN(sec)) return '';
  if (sec < 60) return `${Math.max(sec, 0)}s ago`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ago`;
  if (sec < 86400) return `${Math.floor(sec / 3600)}h ago`;
  return `${Math.floor(sec / 86400)}d ago`;
}

// Status badges: an icon and the word, so status never depends on colour.
const icons = {
  active: '✔', pending: '…', error: '✖', paused: '⏸', suspended: '⛔', waiting: '⌛',
  up: '▲', down: '▼',
};

export function badge(status) {
  const s = status || 'unknown';
  return el('span', { class: `badge st-${s.replace(/[^a-z]/g, '')}`, 'data-status': s },
    el('span', { 'aria-hidden': 'true' }, icons[s] || '?'), ' ', s);
}

export function yesNo(b) {
  return el('span', { class: b ? 'yes' : 'no' }, b ? '✔ yes' : '– no');
}

export function notice(msg, isError = false) {
  const n = $('#notice');
  n.textContent = msg || '';
  n.className = isError ? 'error' : '';
}
