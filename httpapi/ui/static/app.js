// The dashboard's entry point: login, navigation and the refresh loop.
import { $, notice } from './dom.js';
import { api, session, setUnauthorizedHandler, APIError } from './api.js';
import * as cluster from './cluster.js';
import * as subs from './subs.js';
import * as tail from './tail.js';

const REFRESH_MS = 2000;
const views = { cluster, subs, tail };
const state = { view: '', isSuper: false, timer: 0 };

// A token in the URL fragment (/ui/#token=…) moves to sessionStorage and
// out of the address bar and history. The fragment never reached the server.
function takeFragmentToken() {
  const m = /^#token=(.+)$/.exec(location.hash);
  if (!m) return;
  session.token = decodeURIComponent(m[1]);
  history.replaceState(null, '', location.pathname + location.search);
}

function showLogin(msg) {
  stopAll();
  session.token = '';
  state.isSuper = false;
  // Nothing of the previous session stays on the page (a secret shown
  // once, another scope's subscriptions, events).
  for (const v of Object.values(views)) v.reset?.();
  notice('');
  $('#nav').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  for (const v of Object.keys(views)) $(`#view-${v}`).hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = msg || '';
  $('#token').value = '';
  $('#token').focus();
}

function stopAll() {
  clearInterval(state.timer);
  state.timer = 0;
  for (const v of Object.values(views)) v.leave?.();
}

// start checks the token and finds its role: GET /v1/cluster answers super
// tokens only (403 for the others); a token that cannot list
// subscriptions is no dashboard token.
async function start() {
  try {
    await api('GET', '/v1/subscriptions', undefined, { quiet401: true });
  } catch (e) {
    const why = e instanceof APIError && e.status === 401 ? 'That token was refused.'
      : e instanceof APIError && e.status === 403 ? 'That token may not read subscriptions.' : e.message;
    showLogin(why);
    return;
  }
  try {
    await api('GET', '/v1/cluster');
    state.isSuper = true;
  } catch {
    state.isSuper = false;
  }
  $('#login').hidden = true;
  $('#nav').hidden = false;
  $('#logout').hidden = false;
  $('#nav-cluster').hidden = !state.isSuper;
  $('#who').textContent = state.isSuper ? 'super token' : 'scoped token';
  $('#who').dataset.role = state.isSuper ? 'super' : 'scoped';
  const want = location.hash.slice(1);
  show(views[want] && (want !== 'cluster' || state.isSuper) ? want : (state.isSuper ? 'cluster' : 'subs'));
}

function show(name) {
  stopAll();
  state.view = name;
  notice('');
  for (const v of Object.keys(views)) $(`#view-${v}`).hidden = v !== name;
  for (const b of document.querySelectorAll('#nav button')) {
    b.setAttribute('aria-current', b.dataset.view === name ? 'page' : 'false');
  }
  history.replaceState(null, '', `#${name}`);
  const v = views[name];
  v.enter?.({ isSuper: state.isSuper });
  if (v.refresh) {
    // One refresh at a time: a slow answer (a sender that is down makes
    // the stats wait up to 3 s) skips ticks instead of piling requests up.
    let busy = false;
    const tick = async () => {
      if (busy) return;
      busy = true;
      try {
        await v.refresh();
      } catch (e) {
        notice(e.message, true);
      } finally {
        busy = false;
      }
    };
    tick();
    state.timer = setInterval(tick, REFRESH_MS);
  }
}

function init() {
  setUnauthorizedHandler((msg) => showLogin(msg));
  for (const v of Object.values(views)) v.init?.();
  $('#login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    session.token = $('#token').value.trim();
    start();
  });
  $('#logout').addEventListener('click', () => showLogin(''));
  for (const b of document.querySelectorAll('#nav button')) {
    b.addEventListener('click', () => show(b.dataset.view));
  }
  // A #token= link opened in a tab that already shows the dashboard
  // changes only the fragment: log in with it.
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#token=')) {
      takeFragmentToken();
      stopAll();
      start();
    }
  });
  takeFragmentToken();
  if (session.token) start(); else showLogin('');
}

init();
