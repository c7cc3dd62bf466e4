/* conflicts: learned exclusions reported by agents, grouped by host and
 * application (the server aggregates), the matching compatibility-catalog
 * entry, and "make permanent": the rule added to a policy as a new version. */
'use strict';

function glob_match(pat, s) {
  var re = '^' + pat.toLowerCase().replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$';
  return new RegExp(re).test(s.toLowerCase());
}

function app_base(a) { return String(a || '').toLowerCase().replace(/^.*[\\/]/, '').replace(/\.exe$/, ''); }

/* Catalog entries with a workaround that names this host or application. */
function catalog_matches(entries, c) {
  return (entries || []).filter(function (e) {
    return (e.workarounds || []).some(function (w) {
      return (w.exclude_hosts || []).some(function (p) { return glob_match(p, c.host); }) ||
        (w.disabled_apps || []).some(function (a) { return c.app && app_base(a) === app_base(c.app); });
    });
  });
}

/* The rule to add: {key: 'disabled_apps'|'decode.exclude_hosts', value}. */
function conflict_rule(c) {
  var s = c.suggestion || '', m = /^disabled_apps \+= (\{.*\})$/.exec(s);
  if (m) {
    try { return { key: 'disabled_apps', value: JSON.parse(m[1]) }; } catch (e) { /* fall through */ }
  }
  m = /^decode\.exclude_hosts(?::| \+=)\s*"?([^"\s]+)"?$/.exec(s);
  if (m) return { key: 'decode.exclude_hosts', value: m[1] };
  if (c.app) return { key: 'disabled_apps', value: { app: c.app, hosts: [c.host] } };
  return { key: 'decode.exclude_hosts', value: c.host };
}

function rule_text(r) { return r.key + ' += ' + JSON.stringify(r.value); }

function add_rule(doc, r) {
  var d = JSON.parse(JSON.stringify(doc || {})), list;
  if (r.key === 'decode.exclude_hosts') {
    d.decode = d.decode || {};
    list = d.decode.exclude_hosts = d.decode.exclude_hosts || [];
  } else {
    list = d.disabled_apps = d.disabled_apps || [];
  }
  var text = JSON.stringify(r.value);
  if (!list.some(function (x) { return JSON.stringify(x) === text; })) list.push(r.value);
  return d;
}

APP.pages.conflicts = function (view) {
  view.appendChild(el('h1', { text: t('conf.title') }));
  var target = el('select', { id: 'conf-policy' });
  var box = el('div', { id: 'conflicts-table' }, t('common.loading'));
  view.appendChild(el('div', { 'class': 'card row' }, el('label', {}, [el('span', { text: t('conf.policy') }), target])));
  view.appendChild(box);
  Promise.all([api('GET', '/conflicts'), api('GET', '/policies'), api('GET', '/groups'), load_catalog()]).then(function (res) {
    var conflicts = res[0].conflicts, policies = res[1].policies, def = policy_of_group(res[2].groups, 'default');
    policies.forEach(function (p) { target.appendChild(el('option', { value: p.id, selected: p.id === def, text: p.name })); });
    clear(box);
    if (!conflicts.length) return box.appendChild(el('p', { text: t('conf.none') }));
    box.appendChild(table(['col.host', 'col.app', 'col.events', 'col.agents', 'col.last_seen', 'col.reason',
      'col.catalog', 'col.suggestion'], conflicts.map(function (c) {
      var rule = conflict_rule(c), cat = catalog_matches(res[3], c);
      return el('tr', { 'data-host': c.host, 'data-app': c.app || '' }, [
        el('td', { text: c.host }), el('td', { text: c.app || '' }), el('td', { 'class': 'num', text: c.events }),
        el('td', { 'class': 'num', text: c.agents }), el('td', { text: fmt_time(c.last_seen) }),
        el('td', { text: c.reason || '' }),
        el('td', { 'class': 'catalog-match' }, cat.map(function (e) { return catalog_cell(e, target); })),
        el('td', {}, [el('code', { text: rule_text(rule) }), el('button', { type: 'button', 'class': 'small permanent',
          text: t('conf.permanent'), onclick: function () { make_permanent(target.value, rule); } })])]);
    }), { id: 'conflicts' }));
  }).catch(fail);
};

/* A matching catalog entry, with a button per workaround that adds it. */
function catalog_cell(e, target) {
  var kids = [el('div', { title: (e.symptom && (e.symptom[LANG] || e.symptom.en)) || '', text: e.product + ' (' + e.id + ')' })];
  (e.workarounds || []).forEach(function (w, i) {
    var rules = (w.exclude_hosts || []).map(function (h) { return { key: 'decode.exclude_hosts', value: h }; })
      .concat((w.disabled_apps || []).map(function (a) { return { key: 'disabled_apps', value: a }; }));
    if (!rules.length) return;
    kids.push(el('button', { type: 'button', 'class': 'small catalog-permanent', 'data-entry': e.id, 'data-fix': i,
      text: t('conf.permanent') + ': ' + workaround_text(w), onclick: function () { make_permanent(target.value, rules); } }));
  });
  return el('div', {}, kids);
}

function make_permanent(policy_id, rules) {
  if (!policy_id) return flash(t('conf.nopolicy'), 'error');
  rules = [].concat(rules);
  var text = rules.map(rule_text).join('; ');
  api('GET', '/policies/' + policy_id).then(function (p) {
    var doc = rules.reduce(add_rule, p.document);
    return api('POST', '/policies/' + p.id + '/versions', { document: doc,
      comment: 'conflict made permanent: ' + text, base_version: p.version }).then(function (r) {
      flash(t('conf.made', { rule: text, p: p.name, v: r.version }));
    });
  }).catch(fail);
}
