// Subscriptions: the list with filters and sorting, and one subscription's
// detail with its actions and per-minute chart.
import { $, el, badge, fmtTime, ago, notice } from './dom.js';
import { api, probe } from './api.js';
import { drawChart } from './chart.js';

// gen changes on reset (log out): an answer to an older session's request
// is dropped.
const st = { list: [], sortKey: 'id', sortDir: 1, selected: '', rotate: null, gen: 0 };

const scopeOf = (s) => `${s.reseller}/${s.domain}/${s.user}`;
const numeric = new Set(['posts-count', 'error-count', 'events-count', 'dropped-count', 'lag']);

export function init() {
  for (const id of ['#f-text', '#f-status', '#f-model']) $(id).addEventListener('input', render);
  for (const th of document.querySelectorAll('#subs-table th[data-sort]')) {
    th.tabIndex = 0;
    const sort = () => {
      const k = th.dataset.sort;
      st.sortDir = st.sortKey === k ? -st.sortDir : 1;
      st.sortKey = k;
      render();
    };
    th.addEventListener('click', sort);
    th.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); } });
  }
  $('#new-sub-toggle').addEventListener('click', () => {
    $('#new-sub').hidden = !$('#new-sub').hidden;
    $('#new-sub-result').textContent = '';
  });
  $('#new-sub').addEventListener('submit', create);
  $('#d-close').addEventListener('click', () => select(''));
  $('#a-pause').addEventListener('click', () => act('pause'));
  $('#a-resume').addEventListener('click', () => act('resume'));
  $('#a-test').addEventListener('click', test);
  $('#a-replay').addEventListener('click', replay);
  $('#a-rotate').addEventListener('click', rotate);
}

export function leave() {}

export function reset() {
  Object.assign(st, { list: [], selected: '', rotate: null, gen: st.gen + 1 });
  $('#subs-table tbody').replaceChildren();
  $('#sub-detail').hidden = true;
  $('#new-sub').hidden = true;
  $('#new-sub').reset();
  for (const id of ['#new-sub-result', '#a-result', '#d-id', '#d-status', '#chart-summary', '#chart-node', '#subs-count']) $(id).textContent = '';
  $('#chart').replaceChildren();
  $('#f-text').value = '';
  $('#f-status').value = '';
}

export async function refresh() {
  const gen = st.gen;
  const list = await api('GET', '/v1/subscriptions') || [];
  if (gen !== st.gen) return;
  st.list = list;
  const models = [...new Set(st.list.map((s) => s.model))].sort();
  const sel = $('#f-model');
  const cur = sel.value;
  sel.replaceChildren(el('option', { value: '' }, 'any'), ...models.map((m) => el('option', {}, m)));
  sel.value = models.includes(cur) ? cur : '';
  render();
  if (st.selected) await refreshDetail();
}

function visible() {
  const text = $('#f-text').value.trim().toLowerCase();
  const status = $('#f-status').value;
  const model = $('#f-model').value;
  const key = st.sortKey;
  const val = (s) => (key === 'scope' ? scopeOf(s) : s[key]);
  return st.list
    .filter((s) => !status || s.status === status)
    .filter((s) => !model || s.model === model)
    .filter((s) => !text || [s.id, s.model, scopeOf(s), s['post-url']].some((v) => String(v).toLowerCase().includes(text)))
    .sort((a, b) => {
      const x = val(a) ?? '', y = val(b) ?? '';
      const c = numeric.has(key) ? x - y : String(x).localeCompare(String(y));
      return c * st.sortDir || a.id.localeCompare(b.id);
    });
}

function render() {
  const rows = visible().map((s) => el('tr', {
    data: { sub: s.id }, class: s.id === st.selected ? 'selected' : '', tabindex: 0,
    onclick: () => select(s.id),
    onkeydown: (e) => { if (e.key === 'Enter') select(s.id); },
  },
  el('td', { class: 'status' }, badge(s.status)),
  el('td', {}, s.id),
  el('td', {}, s.model),
  el('td', {}, scopeOf(s)),
  el('td', { class: 'url' }, s['post-url']),
  el('td', {}, s['current-active-server'] || '—'),
  el('td', { class: 'num posts' }, s['posts-count']),
  el('td', { class: 'num errors' }, s['error-count']),
  el('td', { class: 'num events' }, s['events-count']),
  el('td', { class: 'num dropped' }, s['dropped-count']),
  el('td', { class: 'num lag' }, s.lag),
  el('td', { class: 'lasterr' }, s['last-error'] ? `${s['last-error']} (${ago(s['last-error-datetime'])})` : ''),
  ));
  $('#subs-table tbody').replaceChildren(...rows);
  $('#subs-count').textContent = `${rows.length} of ${st.list.length}`;
  for (const th of document.querySelectorAll('#subs-table th[data-sort]')) {
    th.setAttribute('aria-sort', th.dataset.sort === st.sortKey ? (st.sortDir > 0 ? 'ascending' : 'descending') : 'none');
  }
}

async function select(id) {
  st.selected = id;
  $('#a-result').textContent = '';
  $('#sub-detail').hidden = !id;
  render();
  if (!id) return;
  $('#a-rotate').hidden = !(await rotateAvailable(id));
  await refreshDetail();
}

// rotateAvailable: the hook for secret rotation. The button shows only
// when this node routes POST /v1/subscriptions/{id}/secret/rotate. A GET
// probes it without rotating: 404 means no such route; anything else
// (405 from a POST-only route, or an answer) means it is there.
async function rotateAvailable(id) {
  if (st.rotate === null) {
    try {
      st.rotate = (await probe(`/v1/subscriptions/${encodeURIComponent(id)}/secret/rotate`)) !== 404;
    } catch {
      return false;
    }
  }
  return st.rotate;
}

async function refreshDetail() {
  const id = st.selected;
  const s = st.list.find((x) => x.id === id);
  if (!s) { select(''); return; }
  $('#d-id').textContent = id;
  $('#d-status').replaceChildren(badge(s.status));
  $('#a-pause').disabled = s.status === 'paused';
  $('#a-resume').disabled = s.status !== 'paused';
  try {
    const gen = st.gen;
    const stats = await api('GET', `/v1/subscriptions/${encodeURIComponent(id)}/stats`);
    if (st.selected !== id || gen !== st.gen) return;
    $('#chart-node').textContent = `(counted by ${stats.node}${stats.note ? `; ${stats.note}` : ''})`;
    const d = stats.minutes.reduce((a, m) => a + m.delivered, 0);
    const f = stats.minutes.reduce((a, m) => a + m.failed, 0);
    $('#chart-summary').textContent = `Last hour: ${d} events delivered, ${f} failed POST attempts.`;
    $('#chart').replaceChildren(drawChart(stats.minutes));
  } catch (e) {
    $('#chart-summary').textContent = `No statistics: ${e.message}`;
    $('#chart').replaceChildren();
  }
}

function show(obj) {
  $('#a-result').textContent = typeof obj === 'string' ? obj : JSON.stringify(obj, null, 2);
}

async function run(label, f) {
  show(`${label}…`);
  try {
    show(await f());
  } catch (e) {
    show(`${label} failed: ${e.message}`);
  }
  await refresh().catch((e) => notice(e.message, true));
}

function act(what) {
  const id = st.selected;
  return run(what, async () => {
    const s = await api('POST', `/v1/subscriptions/${encodeURIComponent(id)}/${what}`);
    return `${id}: ${s && s.status ? s.status : 'done'}`;
  });
}

function test() {
  const id = st.selected;
  return run('test', async () => {
    const r = await api('POST', `/v1/subscriptions/${encodeURIComponent(id)}/test`);
    const head = r.ok ? `✔ receiver answered ${r.status}` : `✖ failed${r.status ? `: ${r.status}` : ''}${r.error ? `: ${r.error}` : ''}`;
    return `${head} in ${r['duration-ms']} ms (event ${r['event-id']})${r.response ? `\n\n${r.response}` : ''}`;
  });
}

function replay() {
  const id = st.selected;
  const v = $('#a-replay-from').value;
  if (!v) { show('Pick the time to replay from.'); return; }
  const from = new Date(v).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return run('replay', async () => {
    await api('POST', `/v1/subscriptions/${encodeURIComponent(id)}/replay`, { from });
    return `${id}: replaying from ${from}`;
  });
}

function rotate() {
  const id = st.selected;
  return run('rotate', async () => {
    const r = await api('POST', `/v1/subscriptions/${encodeURIComponent(id)}/secret/rotate`);
    return `New secret (shown once; store it now):\n${r.secret}`;
  });
}

async function create(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = {};
  for (const [k, v] of f.entries()) if (String(v).trim()) body[k] = String(v).trim();
  const out = $('#new-sub-result');
  try {
    const s = await api('POST', '/v1/subscriptions', body);
    out.textContent = `Created ${s.id}. Signing secret (shown once): ${s.secret}`;
    ev.target.reset();
    ev.target.hidden = true;
    await refresh();
  } catch (e) {
    out.textContent = `Not created: ${e.message}`;
  }
}
