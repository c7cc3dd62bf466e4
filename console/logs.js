/* logs: log search (time range, agent, application, host, category,
 * action), cursor pagination and CSV export of everything that matches
 * (bounded to CSV_MAX_ROWS). */
'use strict';

var CSV_MAX_ROWS = 50000;
var LOG_ACTIONS = ['allow', 'block', 'tunnel', 'bypass', 'view_only'];

function line_cats(l) { return Array.isArray(l.categories) ? l.categories.join(' ') : ''; }

function logs_table(rows) {
  return table(['col.time', 'col.agent', 'col.app', 'col.host', 'col.url', 'col.category', 'col.action',
    'col.status'], rows.map(function (r) {
    var l = r.line || {};
    return el('tr', { 'data-action': l.action || '' }, [
      el('td', { text: fmt_time(r.time) }), el('td', { text: r.agent_hostname || r.agent_id }),
      el('td', { text: l.app || '' }), el('td', { text: l.host || '' }),
      el('td', { 'class': 'url', text: l.url || '' }),
      el('td', { text: (l.categories || []).map(category_label).join(', ') }),
      el('td', {}, l.action ? el('span', { 'class': 'badge action-' + l.action, text: l.action }) : ''),
      el('td', { text: l.status === undefined ? '' : l.status })]);
  }), { 'class': 'logs' });
}

function to_unix(v) {
  if (!v) return '';
  var ms = new Date(v).getTime();
  return isNaN(ms) ? '' : Math.floor(ms / 1000);
}

function logs_field(name, label, input) {
  input.name = name;
  input.id = 'logs-' + name;
  return el('label', {}, [el('span', { text: t(label) }), input]);
}

APP.pages.logs = function (view, args) {
  var agent = el('select', {}, el('option', { value: '', text: t('logs.any') }));
  var action = el('select', {}, [el('option', { value: '', text: t('logs.any') })].concat(
    LOG_ACTIONS.map(function (a) { return el('option', { value: a, text: a }); })));
  var cat = el('input', { list: 'cat-names', placeholder: 'games' });
  var catlist = el('datalist', { id: 'cat-names' }, CATEGORIES.map(function (c) {
    return el('option', { value: c[0], text: category_label(c[0]) });
  }));
  var limit = el('select', {}, [50, 100, 500].map(function (n) {
    return el('option', { value: n, text: n, selected: n === 100 });
  }));
  var form = el('form', { 'class': 'filters card', id: 'logs-form' }, [
    logs_field('from', 'logs.from', el('input', { type: 'datetime-local' })),
    logs_field('to', 'logs.to', el('input', { type: 'datetime-local' })),
    logs_field('agent', 'col.agent', agent),
    logs_field('app', 'col.app', el('input', { placeholder: 'firefox' })),
    logs_field('host', 'col.host', el('input', { placeholder: '*.example.com' })),
    logs_field('category', 'col.category', cat), catlist,
    logs_field('action', 'col.action', action),
    logs_field('limit', 'logs.limit', limit),
    el('div', { 'class': 'buttons' }, [el('button', { type: 'submit', id: 'logs-search', text: t('logs.search') }),
      el('button', { type: 'button', id: 'logs-csv', text: t('logs.csv'), onclick: export_csv })])]);
  var out = el('div', { id: 'logs-result' });
  var pager = el('div', { 'class': 'buttons', id: 'logs-pager' });
  view.appendChild(el('h1', { text: t('logs.title') }));
  view.appendChild(form);
  view.appendChild(out);
  view.appendChild(pager);
  if (args[0] && args[1] !== undefined && form.elements[args[0]]) form.elements[args[0]].value = args[1];
  api('GET', '/agents?deleted=include').then(function (r) {
    r.agents.forEach(function (a) { agent.appendChild(el('option', { value: a.id, text: a.hostname || a.id })); });
  }).catch(fail);

  var cursors = [null], page = 0;
  function filters() {
    var f = form.elements;
    return { from: to_unix(f.from.value), to: to_unix(f.to.value), agent: f.agent.value, app: f.app.value.trim(),
      host: f.host.value.trim(), category: f.category.value.trim(), action: f.action.value };
  }
  function load() {
    var q = filters();
    q.limit = form.elements.limit.value;
    q.cursor = cursors[page];
    api('GET', '/logs' + api_query(q)).then(function (r) {
      clear(out);
      clear(pager);
      out.appendChild(r.logs.length ? logs_table(r.logs) : el('p', { text: t('logs.none') }));
      if (r.next) cursors[page + 1] = r.next;
      pager.appendChild(el('button', { type: 'button', id: 'logs-prev', text: t('logs.prev'), disabled: page === 0,
        onclick: function () { page--; load(); } }));
      pager.appendChild(el('span', { id: 'logs-page', text: t('logs.page', { n: page + 1 }) }));
      pager.appendChild(el('button', { type: 'button', id: 'logs-next', text: t('logs.next'), disabled: !r.next,
        onclick: function () { page++; load(); } }));
    }, function (e) {
      if (e.status === 401) return;
      clear(out);
      var f = e.field && form.elements[e.field];
      if (f) mark_field_error(f, e.message); else flash(api_message(e), 'error');
    });
  }
  function export_csv() {
    collect_all(filters(), [], null, 0).then(function (rows) {
      var blob = new Blob([csv_of(rows)], { type: 'text/csv;charset=utf-8' });
      var a = el('a', { href: URL.createObjectURL(blob), download: 'shoji-logs.csv' });
      document.body.appendChild(a);
      a.click();
      setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    }, fail);
  }
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    Array.prototype.forEach.call(form.querySelectorAll('.field-error'), function (n) { n.remove(); });
    cursors = [null];
    page = 0;
    load();
  });
  load();
};

function collect_all(q, acc, cursor, n) {
  var p = Object.assign({}, q, { limit: 1000, cursor: cursor });
  return api('GET', '/logs' + api_query(p)).then(function (r) {
    acc = acc.concat(r.logs);
    if (!r.next || acc.length >= CSV_MAX_ROWS || n > 100) return acc;
    return collect_all(q, acc, r.next, n + 1);
  });
}

function csv_cell(v) {
  var s = v === undefined || v === null ? '' : String(v);
  /* a leading = + - @ would be a formula in a spreadsheet */
  if (/^[=+\-@]/.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function csv_of(rows) {
  var cols = ['time', 'agent_id', 'agent_hostname', 'app', 'method', 'url', 'host', 'status', 'categories',
    'action', 'rule', 'mode', 'bytes_in', 'bytes_out'];
  var out = [cols.join(',')];
  rows.forEach(function (r) {
    var l = r.line || {};
    out.push([new Date(r.time * 1000).toISOString(), r.agent_id, r.agent_hostname, l.app, l.method, l.url, l.host,
      l.status, line_cats(l), l.action, l.rule, l.mode, l.bytes_in, l.bytes_out].map(csv_cell).join(','));
  });
  return out.join('\r\n') + '\r\n';
}

/* Puts an error message right after the field (the server's "field"). */
function mark_field_error(input, msg) {
  var old = input.parentNode.querySelector('.field-error');
  if (old) old.remove();
  input.classList.add('invalid');
  input.parentNode.appendChild(el('span', { 'class': 'field-error', role: 'alert', text: msg }));
  input.focus();
}
