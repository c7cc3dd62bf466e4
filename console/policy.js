/* policy: the policy editor (categories, lists, decode exclusions,
 * disabled applications, write restriction, safe search), the
 * compatibility catalog (compat.json) applied in one click, versions with a
 * diff and roll-back. Keys the form does not edit are kept unchanged. */
'use strict';

var POL = { catalog: null };
var LIST_KEYS = ['allow', 'block', 'bypass', 'view_only'];
var ENGINES = ['google', 'bing', 'youtube', 'duckduckgo'];
var EDITED_KEYS = ['default_action', 'template', 'categories', 'allow', 'block', 'bypass', 'view_only',
  'decode', 'disabled_apps', 'write_restriction', 'safe_search'];

function load_catalog() {
  if (POL.catalog) return Promise.resolve(POL.catalog);
  return fetch('compat.json', { cache: 'no-store' }).then(function (r) {
    if (!r.ok) throw new Error('compat.json ' + r.status);
    return r.json();
  }).then(function (c) { POL.catalog = c.entries || []; return POL.catalog; },
    function () { return null; });
}

APP.pages.policy = function (view, args) {
  view.appendChild(el('h1', { text: t('pol.title') }));
  var body = el('div', {}, t('common.loading'));
  view.appendChild(body);
  Promise.all([api('GET', '/policies'), api('GET', '/groups')]).then(function (res) {
    clear(body);
    var list = res[0].policies, groups = res[1].groups;
    if (!list.length) return body.appendChild(policy_create_form());
    var id = args[0] || policy_of_group(groups, 'default') || list[0].id;
    body.appendChild(policy_picker(list, groups, id));
    return api('GET', '/policies/' + encodeURIComponent(id)).then(function (p) {
      POL.current = p;
      body.appendChild(policy_form(p));
      body.appendChild(catalog_card());
      body.appendChild(versions_card(p));
    });
  }).catch(fail);
};

function policy_of_group(groups, name) {
  for (var i = 0; i < groups.length; i++) if (groups[i].name === name) return groups[i].policy_id;
  return null;
}

function policy_create_form() {
  var name = el('input', { id: 'new-policy-name', required: true, value: 'default' });
  return el('form', { 'class': 'card', id: 'policy-create', onsubmit: function (ev) {
    ev.preventDefault();
    api('POST', '/policies', { name: name.value.trim(), comment: 'created in the console',
      document: { default_action: 'allow' } }).then(function (r) {
      return api('PUT', '/groups/default', { policy_id: r.id }).then(function () {
        location.hash = '#/policy/' + r.id;
      });
    }).catch(fail);
  } }, [el('p', { text: t('pol.none') }), el('label', {}, [el('span', { text: t('pol.name') }), name]),
    el('button', { type: 'submit', text: t('pol.create') })]);
}

function policy_picker(list, groups, id) {
  var sel = el('select', { id: 'policy-select', onchange: function () { location.hash = '#/policy/' + sel.value; } },
    list.map(function (p) {
      return el('option', { value: p.id, selected: p.id === id, text: p.name + ' (' + t('pol.version', { v: p.current_version }) + ')' });
    }));
  var names = groups.filter(function (g) { return g.policy_id === id; }).map(function (g) { return g.name; });
  return el('div', { 'class': 'card row' }, [el('label', {}, [el('span', { text: t('pol.select') }), sel]),
    el('span', { id: 'policy-groups', text: t('pol.group') + ': ' + (names.join(', ') || '—') })]);
}

function lines_of(v) {
  return (Array.isArray(v) ? v : []).map(function (x) {
    if (typeof x === 'string') return x;
    if (x && x.app) return x.app + (x.hosts && x.hosts.length ? ': ' + x.hosts.join(', ') : '');
    return JSON.stringify(x);
  }).join('\n');
}

function list_of(text) {
  return text.split('\n').map(function (s) { return s.trim(); }).filter(function (s) { return s; });
}

function field(key, label, input) {
  input.setAttribute('data-key', key);
  input.id = 'f-' + key.replace(/\./g, '-');
  return el('label', { 'class': 'field' }, [el('span', { text: t(label) }), input]);
}

function textarea(v) { return el('textarea', { rows: 3, spellcheck: 'false', value: lines_of(v) }); }

function policy_form(p) {
  var d = p.document || {}, dec = d.decode || {};
  var form = el('form', { 'class': 'card', id: 'policy-form' });
  var act = el('select', {}, ['allow', 'block'].map(function (a) {
    return el('option', { value: a, selected: (d.default_action || 'allow') === a, text: t('action.' + a) });
  }));
  var tpl = el('select', {}, [el('option', { value: '', text: t('pol.template_none') })].concat(TEMPLATES.map(function (n) {
    return el('option', { value: n, selected: d.template === n, text: n });
  })));
  form.appendChild(el('h2', { text: p.name + ' — ' + t('pol.version', { v: p.version }) }));
  form.appendChild(el('div', { 'class': 'row' }, [field('default_action', 'pol.default_action', act),
    field('template', 'pol.template', tpl)]));
  form.appendChild(categories_table(d.categories || {}));
  form.appendChild(el('h3', { text: t('pol.lists') }));
  form.appendChild(el('div', { 'class': 'grid2' }, LIST_KEYS.map(function (k) {
    return field(k, 'pol.' + k, textarea(d[k]));
  })));
  form.appendChild(el('h3', { text: t('pol.decode') }));
  form.appendChild(el('div', { 'class': 'grid2' }, [
    field('decode.exclude_hosts', 'pol.exclude_hosts', textarea(dec.exclude_hosts)),
    field('decode.skip_categories', 'pol.skip_categories', textarea(dec.skip_categories)),
    field('disabled_apps', 'pol.disabled_apps', textarea(d.disabled_apps)),
    field('write_restriction', 'pol.write_restriction', textarea(d.write_restriction))]));
  form.appendChild(safe_search_box(d.safe_search));
  var others = Object.keys(d).filter(function (k) { return EDITED_KEYS.indexOf(k) < 0; });
  if (others.length) {
    var keep = {};
    others.forEach(function (k) { keep[k] = d[k]; });
    form.appendChild(el('details', {}, [el('summary', { text: t('pol.other_keys') + ': ' + others.join(', ') }),
      el('pre', { text: JSON.stringify(keep, null, 2) })]));
  }
  var comment = el('input', { id: 'policy-comment', name: 'comment', maxlength: 200 });
  form.appendChild(el('div', { 'class': 'row save' }, [el('label', {}, [el('span', { text: t('pol.comment') }), comment]),
    el('button', { type: 'submit', id: 'policy-save', text: t('pol.save') })]));
  form.appendChild(el('p', { 'class': 'error', id: 'policy-error', role: 'alert' }));
  form.addEventListener('submit', function (ev) { ev.preventDefault(); policy_save(form, p); });
  return form;
}

function categories_table(cats) {
  var names = CATEGORIES.map(function (c) { return c[0]; });
  Object.keys(cats).forEach(function (n) { if (names.indexOf(n) < 0) names.push(n); });
  var body = el('tbody');
  function row(n) {
    var sel = el('select', { 'data-category': n, id: 'cat-' + n }, ['', 'allow', 'block', 'view_only'].map(function (a) {
      return el('option', { value: a, selected: (cats[n] || '') === a, text: a ? t('action.' + a) : t('pol.cat_inherit') });
    }));
    return el('tr', {}, [el('td', { text: category_label(n) }), el('td', { 'class': 'mono', text: n }), el('td', {}, sel)]);
  }
  names.forEach(function (n) { body.appendChild(row(n)); });
  var add = el('input', { id: 'cat-add-name', placeholder: 'category_name', size: 16 });
  var wrap = el('div', { 'class': 'cats', 'data-key': 'categories', id: 'f-categories' }, [
    el('h3', { text: t('pol.categories') }),
    el('div', { 'class': 'scroll' }, el('table', { id: 'categories' }, body)),
    el('div', { 'class': 'row' }, [add, el('button', { type: 'button', text: t('pol.add_category'), onclick: function () {
      var n = add.value.trim();
      if (n && !document.getElementById('cat-' + n)) body.insertBefore(row(n), body.firstChild);
      add.value = '';
    } })])]);
  return wrap;
}

function safe_search_box(ss) {
  var box = el('fieldset', { id: 'f-safe_search', 'data-key': 'safe_search' }, el('legend', { text: t('pol.safe_search') }));
  ENGINES.forEach(function (e) {
    var on = ss === true || (ss && typeof ss === 'object' && ss[e] === true);
    box.appendChild(el('label', { 'class': 'inline' }, [el('input', { type: 'checkbox', id: 'ss-' + e, checked: on }), ' ' + e]));
  });
  return box;
}

function set_or_drop(obj, key, v) {
  if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length) ||
      (typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length)) delete obj[key];
  else obj[key] = v;
}

function app_entry(line) {
  var i = line.indexOf(':');
  if (i < 0) return line;
  var hosts = list_of(line.slice(i + 1).replace(/,/g, '\n'));
  return hosts.length ? { app: line.slice(0, i).trim(), hosts: hosts } : line.slice(0, i).trim();
}

/* The document from the form: the current document with the edited keys replaced. */
function policy_from_form(form, base) {
  var d = JSON.parse(JSON.stringify(base || {}));
  function val(key) { return form.querySelector('[data-key="' + key + '"]').value; }
  d.default_action = val('default_action');
  set_or_drop(d, 'template', val('template'));
  var cats = {};
  Array.prototype.forEach.call(form.querySelectorAll('select[data-category]'), function (s) {
    if (s.value) cats[s.getAttribute('data-category')] = s.value;
  });
  set_or_drop(d, 'categories', cats);
  LIST_KEYS.forEach(function (k) { set_or_drop(d, k, list_of(val(k))); });
  var dec = Object.assign({}, d.decode || {});
  set_or_drop(dec, 'exclude_hosts', list_of(val('decode.exclude_hosts')));
  set_or_drop(dec, 'skip_categories', list_of(val('decode.skip_categories')));
  set_or_drop(d, 'decode', dec);
  set_or_drop(d, 'disabled_apps', list_of(val('disabled_apps')).map(app_entry));
  set_or_drop(d, 'write_restriction', list_of(val('write_restriction')));
  var on = ENGINES.filter(function (e) { return $('ss-' + e).checked; });
  if (on.length === ENGINES.length) d.safe_search = true;
  else if (!on.length) delete d.safe_search;
  else { d.safe_search = {}; on.forEach(function (e) { d.safe_search[e] = true; }); }
  return d;
}

function clear_field_errors(form) {
  Array.prototype.forEach.call(form.querySelectorAll('.field-error'), function (n) { n.remove(); });
  Array.prototype.forEach.call(form.querySelectorAll('.invalid'), function (n) { n.classList.remove('invalid'); });
  $('policy-error').textContent = '';
}

/* The form field a loader message is about: "key `decode.exclude_hosts`" or
 * "key `categories.gamblng`" -> the closest data-key. */
function field_for_message(form, msg) {
  var m = /key `([^`]+)`/.exec(msg || '');
  if (!m) return null;
  var parts = m[1].split('.');
  for (var n = parts.length; n > 0; n--) {
    var f = form.querySelector('[data-key="' + parts.slice(0, n).join('.') + '"]');
    if (f) {
      if (parts[0] === 'categories' && parts[1]) return $('cat-' + parts[1]) || f;
      return f;
    }
  }
  return null;
}

function policy_save(form, p) {
  clear_field_errors(form);
  var doc = policy_from_form(form, p.document);
  api('POST', '/policies/' + p.id + '/versions', { document: doc, comment: $('policy-comment').value.trim(),
    base_version: p.version }).then(function (r) {
    go('#/policy/' + p.id, t('pol.saved', { v: r.version }));
  }, function (e) {
    if (e.status === 401) return;
    var msg = e.status === 409 ? t('pol.conflict') : api_message(e);
    var f = e.status === 400 ? field_for_message(form, e.message) : null;
    if (f) mark_field_error(f, msg);
    else $('policy-error').textContent = msg;
  });
}
