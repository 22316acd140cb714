// Cluster members, from GET /v1/cluster (super tokens only), with drain
// and undrain.
import { $, el, badge, yesNo, fmtTime, ago, notice } from './dom.js';
import { api } from './api.js';

let gen = 0; // changes on reset: an older session's answer is dropped

export function reset() {
  gen++;
  $('#cluster-table tbody').replaceChildren();
  $('#cluster-leader').textContent = '';
}

export async function refresh() {
  const g = gen;
  const c = await api('GET', '/v1/cluster');
  if (g !== gen) return;
  $('#cluster-leader').textContent = c.leader ? `leader: ${c.leader}` : 'no leader';
  const rows = (c.nodes || []).map((n) => el('tr', { data: { node: n.id } },
    el('td', {}, n.id),
    el('td', {}, n['http-addr']),
    el('td', {}, n['raft-addr']),
    el('td', {}, n['raft-role'] || ''),
    el('td', {}, n.suffrage || ''),
    el('td', { class: 'health' }, badge(n.health || 'unknown')),
    el('td', { title: fmtTime(n['up-since']) }, n['up-since'] ? `${fmtTime(n['up-since'])} (${ago(n['up-since'])})` : ''),
    el('td', {}, yesNo(n.stable)),
    el('td', { class: 'draining' }, yesNo(n.draining)),
    el('td', {}, yesNo(n.witness)),
    el('td', { class: 'num' }, n['active-subscriptions'] ?? 0),
    el('td', {}, el('button', {
      type: 'button', class: 'drain',
      onclick: () => drain(n.id, !n.draining),
    }, n.draining ? 'Undrain' : 'Drain')),
  ));
  $('#cluster-table tbody').replaceChildren(...rows);
}

async function drain(id, on) {
  try {
    await api('POST', `/v1/cluster/nodes/${encodeURIComponent(id)}/${on ? 'drain' : 'undrain'}`);
    notice(`${id}: ${on ? 'draining' : 'no longer draining'}`);
    await refresh();
  } catch (e) {
    notice(e.message, true);
  }
}
