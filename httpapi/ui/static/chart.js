// A per-minute chart as inline SVG: delivered events as bars, failed POST
// attempts as a dashed line with square markers (told apart by shape, not
// only colour), a y axis with its maximum and a time axis.
const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

const hhmm = (ms) => {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
};

export function drawChart(minutes) {
  const W = 720, H = 200, L = 48, R = 12, T = 12, B = 34;
  const w = W - L - R, h = H - T - B;
  const n = minutes.length || 1;
  const top = Math.max(1, ...minutes.map((m) => Math.max(m.delivered, m.failed)));
  const x = (i) => L + (i * w) / n;
  const y = (v) => T + h - (v * h) / top;
  const d = minutes.reduce((a, m) => a + m.delivered, 0);
  const f = minutes.reduce((a, m) => a + m.failed, 0);

  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img' });
  root.append(svg('title', {}, `Per minute, last hour: ${d} events delivered, ${f} failed POST attempts; peak ${top} per minute`));
  root.append(svg('line', { x1: L, y1: T + h, x2: L + w, y2: T + h, class: 'axis' }));
  root.append(svg('line', { x1: L, y1: T, x2: L, y2: T + h, class: 'axis' }));
  root.append(svg('text', { x: L - 6, y: T + 4, class: 'tick', 'text-anchor': 'end' }, String(top)));
  root.append(svg('text', { x: L - 6, y: T + h, class: 'tick', 'text-anchor': 'end' }, '0'));
  for (const i of [0, 15, 30, 45, n - 1]) {
    if (!minutes[i]) continue;
    root.append(svg('text', { x: x(i) + w / n / 2, y: H - B + 16, class: 'tick', 'text-anchor': 'middle' }, hhmm(minutes[i].start)));
  }
  const bw = Math.max(1, w / n - 2);
  minutes.forEach((m, i) => {
    if (m.delivered > 0) {
      const r = svg('rect', { x: x(i) + 1, y: y(m.delivered), width: bw, height: T + h - y(m.delivered), class: 'bar-delivered' });
      r.append(svg('title', {}, `${hhmm(m.start)}: ${m.delivered} delivered, ${m.failed} failed`));
      root.append(r);
    }
  });
  const pts = minutes.map((m, i) => `${x(i) + w / n / 2},${y(m.failed)}`).join(' ');
  root.append(svg('polyline', { points: pts, class: 'line-failed' }));
  minutes.forEach((m, i) => {
    if (m.failed > 0) root.append(svg('rect', { x: x(i) + w / n / 2 - 3, y: y(m.failed) - 3, width: 6, height: 6, class: 'mark-failed' }));
  });
  // Legend.
  const ly = H - 6;
  root.append(svg('rect', { x: L, y: ly - 9, width: 12, height: 10, class: 'bar-delivered' }));
  root.append(svg('text', { x: L + 16, y: ly, class: 'legend' }, 'delivered events (bars)'));
  root.append(svg('line', { x1: L + 200, y1: ly - 4, x2: L + 224, y2: ly - 4, class: 'line-failed' }));
  root.append(svg('rect', { x: L + 209, y: ly - 7, width: 6, height: 6, class: 'mark-failed' }));
  root.append(svg('text', { x: L + 230, y: ly, class: 'legend' }, 'failed POST attempts (dashed, squares)'));
  return root;
}
