// The live event tail over the node's websocket (GET /v1/events/ws).
// Browsers cannot set headers on a websocket, so the token goes in
// ?authkey= (the Enswitch form the endpoint accepts). The node logs no
// URLs; the page sends no Referer (Referrer-Policy: no-referrer).
import { $, el, fmtTime } from './dom.js';
import { session } from './api.js';

const MAX_ROWS = 200;
const st = { ws: null, paused: false, corr: 0, filters: [] };

// parseFilters reads "model=call domain=a.example, user=*" into the
// websocket's filter list; it throws on a term without "=".
export function parseFilters(text) {
  const out = [];
  for (const term of text.split(/[\s,]+/).filter(Boolean)) {
    const i = term.indexOf('=');
    if (i <= 0) throw new Error(`"${term}" is not property=value`);
    out.push({ property: term.slice(0, i), value: term.slice(i + 1) });
  }
  return out;
}

export function init() {
  $('#tail-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    try {
      st.filters = parseFilters($('#tail-filter').value);
    } catch (e) {
      setState(`✖ ${e.message}`);
      return;
    }
    sendFilters();
  });
  $('#tail-pause').addEventListener('click', () => {
    st.paused = !st.paused;
    $('#tail-pause').textContent = st.paused ? 'Resume' : 'Pause';
    setState(st.paused ? '⏸ paused (events are not shown)' : '● live');
  });
  $('#tail-clear').addEventListener('click', () => $('#tail-table tbody').replaceChildren());
}

function setState(s) { $('#tail-state').textContent = s; }

function sendFilters() {
  if (st.ws && st.ws.readyState === WebSocket.OPEN) {
    st.ws.send(JSON.stringify({ type: 'filter', correlationId: String(++st.corr), filters: st.filters }));
  }
}

export function enter() {
  leave();
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/v1/events/ws?authkey=${encodeURIComponent(session.token)}`);
  st.ws = ws;
  setState('… connecting');
  ws.addEventListener('open', () => {
    setState('● live');
    if (st.filters.length) sendFilters();
  });
  ws.addEventListener('close', (e) => {
    if (st.ws !== ws) return;
    st.ws = null;
    setState(`✖ disconnected${e.code ? ` (${e.code}${e.reason ? `: ${e.reason}` : ''})` : ''}; open the tab again to reconnect`);
  });
  ws.addEventListener('message', (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    if (ev && (ev.type === 'success' || ev.type === 'error') && 'correlationId' in ev) {
      setState(ev.type === 'success' ? `● live, filters applied (${st.filters.length})` : `✖ filter refused: ${ev.error}`);
      return;
    }
    if (st.paused) return;
    add(ev);
  });
}

function add(ev) {
  const body = $('#tail-table tbody');
  const json = JSON.stringify(ev);
  body.prepend(el('tr', {},
    el('td', {}, fmtTime(new Date().toISOString())),
    el('td', {}, ev.model ?? ''),
    el('td', {}, ev.domain ?? ''),
    el('td', { class: 'mono' }, ev['event-id'] ?? ''),
    el('td', { class: 'mono event', title: json }, json.length > 300 ? `${json.slice(0, 300)}…` : json),
  ));
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
}

export function reset() {
  leave();
  $('#tail-table tbody').replaceChildren();
  $('#tail-filter').value = '';
  st.filters = [];
  st.paused = false;
  $('#tail-pause').textContent = 'Pause';
  setState('');
}

export function leave() {
  if (st.ws) {
    const ws = st.ws;
    st.ws = null;
    ws.close(1000, 'left the tail');
  }
}
