/* app: DOM helpers, routing, login/logout and the dashboard. Never builds
 * HTML from strings (all text goes through textContent), never uses inline
 * scripts or styles (the server's CSP forbids them). */
'use strict';

var APP = { user: null, pages: {}, page: null };
var SVG_NS = 'http://www.w3.org/2000/svg';

function el(tag, attrs, kids) {
  var e = document.createElement(tag);
  set_attrs(e, attrs);
  add_kids(e, kids);
  return e;
}

function svg(tag, attrs, kids) {
  var e = document.createElementNS(SVG_NS, tag);
  set_attrs(e, attrs);
  add_kids(e, kids);
  return e;
}

function set_attrs(e, attrs) {
  Object.keys(attrs || {}).forEach(function (k) {
    var v = attrs[k];
    if (v === undefined || v === null || v === false) return;
    if (k === 'text') e.textContent = String(v);
    else if (k.indexOf('on') === 0 && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'value') e.value = v;
    else if (k === 'checked') e.checked = !!v;
    else e.setAttribute(k, v === true ? '' : String(v));
  });
}

function add_kids(e, kids) {
  (Array.isArray(kids) ? kids : (kids === undefined ? [] : [kids])).forEach(function (k) {
    if (k === null || k === undefined || k === false) return;
    e.appendChild(typeof k === 'object' ? k : document.createTextNode(String(k)));
  });
}

function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
function $(id) { return document.getElementById(id); }

function fmt_time(secs) {
  if (secs === null || secs === undefined) return '—';
  var d = new Date(secs * 1000);
  function p(n) { return (n < 10 ? '0' : '') + n; }
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' +
    p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
}

function flash(msg, kind) {
  var f = $('flash');
  f.textContent = msg;
  f.className = kind === 'error' ? 'error-flash' : 'ok-flash';
  clearTimeout(flash.timer);
  if (kind !== 'error') flash.timer = setTimeout(function () { f.className = 'hidden'; }, 8000);
}

/* Shows an API failure; a 401 already sent the user to the login page. */
function fail(e) {
  if (e && e.status === 401) return;
  flash(api_message(e), 'error');
}

function flash_clear() { $('flash').className = 'hidden'; }

function table(headers, rows, attrs) {
  return el('table', attrs || {}, [
    el('thead', {}, el('tr', {}, headers.map(function (h) { return el('th', { text: t(h) }); }))),
    el('tbody', {}, rows)
  ]);
}

function state_badge(state) {
  return el('span', { 'class': 'badge state-' + state, 'data-state': state, text: t('state.' + state) });
}

/* ---- language ---- */

function apply_lang(lang) {
  LANG = lang;
  localStorage.setItem('shoji_lang', lang);
  document.documentElement.lang = lang;
  $('lang').value = lang;
  Array.prototype.forEach.call(document.querySelectorAll('[data-i18n]'), function (n) {
    n.textContent = t(n.getAttribute('data-i18n'));
  });
}

/* ---- login ---- */

function show_login(msg) {
  APP.user = null;
  $('top').className = 'hidden';
  clear($('view'));
  $('login').className = '';
  $('login-error').textContent = msg || '';
  $('login-password').value = '';
  $('login-user').focus();
}

function login_submit(ev) {
  ev.preventDefault();
  var body = { username: $('login-user').value, password: $('login-password').value };
  $('login-error').textContent = '';
  api('POST', '/login', body).then(function (r) {
    api_set_csrf(r.csrf_token);
    logged_in(r.username);
  }, function (e) {
    var msg = e.status === 401 ? t('login.wrong')
      : e.status === 429 ? t('login.locked', { s: e.retry_after || '?' }) : api_message(e);
    $('login-error').textContent = msg;
  });
}

function logged_in(user) {
  APP.user = user;
  $('login').className = 'hidden';
  $('top').className = '';
  $('who').textContent = user;
  if (!location.hash || location.hash === '#/' || location.hash === '#/login') location.hash = '#/dashboard';
  else route();
}

function logout() {
  api('POST', '/logout', {}).then(function () {
    api_set_csrf(null);
    show_login(t('login.loggedout'));
  }, function (e) { flash(api_message(e), 'error'); });
}

/* ---- routing: #/page/arg ---- */

function route() {
  if (!APP.user) return;
  var parts = location.hash.replace(/^#\/?/, '').split('/');
  var name = APP.pages[parts[0]] ? parts[0] : 'dashboard';
  APP.page = name;
  Array.prototype.forEach.call(document.querySelectorAll('#nav a'), function (a) {
    a.className = a.getAttribute('data-page') === name ? 'active' : '';
  });
  var view = clear($('view'));
  view.setAttribute('data-page', name);
  flash_clear();
  if (APP.pending_flash) {
    flash(APP.pending_flash);
    APP.pending_flash = null;
  }
  APP.pages[name](view, parts.slice(1).map(function (p) {
    try { return decodeURIComponent(p); } catch (e) { return ''; }
  }));
}

/* Shows `hash` again (re-rendered) with a message on top. */
function go(hash, msg) {
  APP.pending_flash = msg || null;
  if (location.hash !== hash) location.hash = hash;
  else route();
}

/* ---- dashboard ---- */

APP.pages.dashboard = function (view) {
  view.appendChild(el('h1', { text: t('dash.title') }));
  var counts = el('div', { 'class': 'cards', id: 'dash-counts' });
  var chart = el('div', { 'class': 'card', id: 'dash-chart' }, el('h2', { text: t('dash.chart') }));
  var top = el('div', { 'class': 'card', id: 'dash-top' }, el('h2', { text: t('dash.top') }));
  view.appendChild(counts);
  view.appendChild(chart);
  view.appendChild(top);
  api('GET', '/agents').then(function (r) {
    var n = { online: 0, offline: 0, stale: 0 };
    r.agents.forEach(function (a) { if (n[a.state] !== undefined) n[a.state]++; });
    [['online', 'dash.online'], ['offline', 'dash.offline'], ['stale', 'dash.stale']].forEach(function (p) {
      counts.appendChild(el('a', { 'class': 'card stat', href: '#/agents', id: 'count-' + p[0] }, [
        el('span', { 'class': 'num', text: n[p[0]] }), el('span', { text: t(p[1]) })]));
    });
  }).catch(fail);
  var now = Math.floor(Date.now() / 1000);
  var from = Math.floor((now - 23 * 3600) / 3600) * 3600;
  api('GET', '/stats/blocked' + api_query({ from: from, to: now + 1 })).then(function (r) {
    chart.appendChild(blocked_chart(r.per_hour, from));
    top.appendChild(r.top_hosts.length ? table(['col.host', 'col.blocked'], r.top_hosts.map(function (h) {
      return el('tr', {}, [el('td', {}, el('a', { href: '#/logs/host/' + encodeURIComponent(h.host), text: h.host })),
        el('td', { 'class': 'num', text: h.blocked })]);
    }), { id: 'top-hosts' }) : el('p', { text: t('dash.nodata') }));
  }).catch(fail);
};

var PALETTE = ['#c0392b', '#2980b9', '#27ae60', '#8e44ad', '#d35400', '#16a085', '#7f8c8d', '#f1c40f'];

/* Stacked bars: one per hour for 24 hours from `from`, one colour per category. */
function blocked_chart(per_hour, from) {
  var cats = [], byhour = {}, max = 0;
  per_hour.forEach(function (p) {
    if (cats.indexOf(p.category) < 0) cats.push(p.category);
    var h = byhour[p.hour] = byhour[p.hour] || {};
    h[p.category] = (h[p.category] || 0) + p.blocked;
  });
  Object.keys(byhour).forEach(function (h) {
    var s = 0;
    Object.keys(byhour[h]).forEach(function (c) { s += byhour[h][c]; });
    max = Math.max(max, s);
  });
  var W = 720, H = 220, L = 40, B = 30, bw = (W - L - 10) / 24;
  var g = svg('svg', { viewBox: '0 0 ' + W + ' ' + (H + 30), 'class': 'chart', id: 'blocked-chart',
    role: 'img', 'aria-label': t('dash.chart') });
  var top = Math.max(1, max), plot = H - B;
  g.appendChild(svg('line', { x1: L, y1: plot, x2: W - 10, y2: plot, stroke: '#888' }));
  g.appendChild(svg('text', { x: L - 6, y: 12, 'text-anchor': 'end', 'class': 'axis' }, String(top)));
  g.appendChild(svg('text', { x: L - 6, y: plot, 'text-anchor': 'end', 'class': 'axis' }, '0'));
  for (var i = 0; i < 24; i++) {
    var hour = from + i * 3600, y = plot, x = L + i * bw + 2;
    if (i % 3 === 0) {
      var d = new Date(hour * 1000);
      g.appendChild(svg('text', { x: x + bw / 2, y: plot + 16, 'text-anchor': 'middle', 'class': 'axis' },
        (d.getHours() < 10 ? '0' : '') + d.getHours() + ':00'));
    }
    cats.forEach(function (c, ci) {
      var v = (byhour[hour] || {})[c] || 0;
      if (!v) return;
      var h = v / top * (plot - 10);
      y -= h;
      g.appendChild(svg('rect', { x: x, y: y, width: bw - 4, height: h, fill: PALETTE[ci % PALETTE.length],
        'data-category': c, 'data-hour': hour, 'data-blocked': v },
        svg('title', {}, category_label(c) + ' ' + fmt_time(hour) + ': ' + v)));
    });
  }
  cats.forEach(function (c, ci) {
    var x = L + ci * 120;
    g.appendChild(svg('rect', { x: x, y: H + 10, width: 12, height: 12, fill: PALETTE[ci % PALETTE.length] }));
    g.appendChild(svg('text', { x: x + 16, y: H + 21, 'class': 'legend', 'data-legend': c }, category_label(c)));
  });
  if (!cats.length) {
    g.appendChild(svg('text', { x: W / 2, y: plot / 2, 'text-anchor': 'middle', 'class': 'axis' }, t('dash.nodata')));
  }
  return g;
}
