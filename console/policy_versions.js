/* policy_versions: the compatibility-catalog card (apply an entry's
 * workaround to the editor form in one click) and the versions card (diff
 * against the current version, roll-back as a new version). */
'use strict';

function catalog_card() {
  var card = el('div', { 'class': 'card', id: 'catalog' }, el('h2', { text: t('pol.catalog') }));
  load_catalog().then(function (entries) {
    if (!entries) return card.appendChild(el('p', { 'class': 'error', text: t('pol.catalog_missing') }));
    var body = el('tbody');
    entries.forEach(function (e) {
      var fixes = el('td');
      (e.workarounds || []).forEach(function (w, i) {
        var label = workaround_text(w);
        if (w.exclude_hosts || w.disabled_apps) {
          fixes.appendChild(el('button', { type: 'button', 'class': 'small', 'data-entry': e.id, 'data-fix': i,
            title: label, text: t('pol.apply') + ': ' + label, onclick: function () { apply_workaround(e, w); } }));
        } else {
          fixes.appendChild(el('div', { 'class': 'muted', text: label }));
        }
      });
      body.appendChild(el('tr', { 'data-entry': e.id }, [el('td', {}, [el('strong', { text: e.product }),
        el('div', { 'class': 'muted', text: (e.symptom && (e.symptom[LANG] || e.symptom.en)) || '' })]), fixes]));
    });
    card.appendChild(el('div', { 'class': 'scroll' }, el('table', {}, body)));
  });
  return card;
}

function workaround_text(w) {
  if (w.exclude_hosts) return 'decode.exclude_hosts += ' + w.exclude_hosts.join(', ');
  if (w.disabled_apps) return 'disabled_apps += ' + w.disabled_apps.join(', ');
  if (w.exclude_hosts_site_specific) return 'decode.exclude_hosts (site specific): ' + [].concat(w.exclude_hosts_site_specific).join(', ');
  if (w.steps) return [].concat(w.steps[LANG] || w.steps.en || w.steps).join(' ');
  return JSON.stringify(w);
}

function append_lines(ta, items) {
  var have = list_of(ta.value);
  items.forEach(function (x) { if (have.indexOf(x) < 0) have.push(x); });
  ta.value = have.join('\n');
  ta.classList.add('changed');
}

function apply_workaround(entry, w) {
  if (w.exclude_hosts) append_lines($('f-decode-exclude_hosts'), w.exclude_hosts);
  if (w.disabled_apps) append_lines($('f-disabled_apps'), w.disabled_apps);
  var c = $('policy-comment');
  if (!c.value) c.value = 'compat: ' + entry.id;
  flash(t('pol.applied', { id: entry.id }));
}

function versions_card(p) {
  var card = el('div', { 'class': 'card', id: 'versions' }, el('h2', { text: t('pol.versions') }));
  var diff = el('div', { id: 'diff' });
  api('GET', '/policies/' + p.id + '/versions').then(function (r) {
    card.insertBefore(table(['pol.versions', 'col.time', 'col.by', 'col.comment', 'col.action'], r.versions.map(function (v) {
      var cur = v.version === p.version;
      return el('tr', { 'data-version': v.version }, [
        el('td', { text: 'v' + v.version + (cur ? ' (' + t('pol.current') + ')' : '') }),
        el('td', { text: fmt_time(v.created_at) }), el('td', { text: v.created_by || '' }),
        el('td', { text: v.comment || '' }),
        el('td', { 'class': 'buttons' }, cur ? [] : [
          el('button', { type: 'button', 'class': 'small diff-btn', text: t('pol.diff'), onclick: function () { show_diff(p, v.version, diff); } }),
          el('button', { type: 'button', 'class': 'small rollback-btn', text: t('pol.rollback'), onclick: function () { rollback(p, v.version); } })])]);
    }), { id: 'versions-table' }), null);
    card.appendChild(diff);
  }).catch(fail);
  return card;
}

function rollback(p, version) {
  if (!confirm(t('pol.confirm_rollback', { v: version }))) return;
  api('POST', '/policies/' + p.id + '/rollback', { version: version }).then(function (r) {
    go('#/policy/' + p.id, t('pol.rolled_back', { v: r.version }));
  }, fail);
}

/* JSON with sorted keys, one value per line, so the line diff reads well. */
function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    var o = {};
    Object.keys(v).sort().forEach(function (k) { o[k] = canonical(v[k]); });
    return o;
  }
  return v;
}

/* Line diff by longest common subsequence (documents are small: bounded
 * to 2,000 lines each, beyond that the whole text is shown as replaced). */
function line_diff(a, b) {
  var n = a.length, m = b.length, out = [], i, j;
  if (n * m > 4000000) {
    return a.map(function (l) { return ['-', l]; }).concat(b.map(function (l) { return ['+', l]; }));
  }
  var L = [];
  for (i = 0; i <= n; i++) L.push(new Uint16Array(m + 1));
  for (i = n - 1; i >= 0; i--) {
    for (j = m - 1; j >= 0; j--) L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  }
  for (i = 0, j = 0; i < n || j < m;) {
    if (i < n && j < m && a[i] === b[j]) { out.push([' ', a[i]]); i++; j++; }
    else if (j < m && (i === n || L[i][j + 1] >= L[i + 1][j])) { out.push(['+', b[j]]); j++; }
    else { out.push(['-', a[i]]); i++; }
  }
  return out;
}

function show_diff(p, version, box) {
  api('GET', '/policies/' + p.id + '/versions/' + version).then(function (old) {
    var a = JSON.stringify(canonical(old.document), null, 2).split('\n');
    var b = JSON.stringify(canonical(p.document), null, 2).split('\n');
    clear(box);
    box.appendChild(el('h3', { text: 'v' + version + ' → v' + p.version }));
    box.appendChild(el('pre', { 'class': 'diff' }, line_diff(a, b).map(function (d) {
      var cls = d[0] === '+' ? 'add' : d[0] === '-' ? 'del' : 'same';
      return el('div', { 'class': cls, text: d[0] + ' ' + d[1] });
    })));
  }).catch(fail);
}
