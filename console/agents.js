/* agents: the agent list and one agent's detail page (recent events,
 * conflicts, delete/restore, refresh-policy task). */
'use strict';

var POLICY_ETAGS = {};   /* etag -> "name vN", for the policy-version column */

function load_policy_etags() {
  return api('GET', '/policies').then(function (r) {
    var jobs = r.policies.map(function (p) {
      return api('GET', '/policies/' + p.id + '/versions').then(function (v) {
        v.versions.forEach(function (x) { POLICY_ETAGS[x.etag] = p.name + ' v' + x.version; });
      });
    });
    return Promise.all(jobs);
  });
}

function policy_label(etag) {
  if (!etag) return '—';
  return POLICY_ETAGS[etag] || etag;
}

APP.pages.agents = function (view, args) {
  if (args[0]) return agent_detail(view, args[0]);
  var show = el('input', { type: 'checkbox', id: 'show-deleted' });
  var box = el('div', { id: 'agents-table' }, t('common.loading'));
  view.appendChild(el('h1', { text: t('agents.title') }));
  view.appendChild(el('label', { 'class': 'inline' }, [show, ' ', t('agents.show_deleted')]));
  view.appendChild(box);
  function load() {
    Promise.all([api('GET', '/agents' + (show.checked ? '?deleted=include' : '')),
      load_policy_etags()]).then(function (res) {
      var agents = res[0].agents;
      clear(box);
      if (!agents.length) return box.appendChild(el('p', { text: t('agents.none') }));
      box.appendChild(table(['col.hostname', 'col.state', 'col.last_seen', 'col.version', 'col.policy',
        'col.group'], agents.map(function (a) {
        return el('tr', { 'data-agent': a.id }, [
          el('td', {}, el('a', { href: '#/agents/' + a.id, text: a.hostname || a.id })),
          el('td', {}, state_badge(a.state)), el('td', { text: fmt_time(a.last_seen) }),
          el('td', { text: a.version || '—' }), el('td', { text: policy_label(a.policy_etag) }),
          el('td', { text: a.group })]);
      }), { id: 'agents' }));
    }).catch(fail);
  }
  show.addEventListener('change', load);
  load();
};

function agent_detail(view, id) {
  var head = el('div', { id: 'agent-detail' }, t('common.loading'));
  var events = el('div', { 'class': 'card', id: 'agent-events' }, el('h2', { text: t('agents.events') }));
  view.appendChild(el('p', {}, el('a', { href: '#/agents', text: '← ' + t('agents.back') })));
  view.appendChild(head);
  view.appendChild(events);
  Promise.all([api('GET', '/agents/' + encodeURIComponent(id)), load_policy_etags()]).then(function (res) {
    var a = res[0];
    clear(head);
    head.appendChild(el('h1', {}, [t('agents.detail') + ': ' + (a.hostname || a.id) + ' ', state_badge(a.state)]));
    var dl = el('dl', { 'class': 'facts' });
    [['col.id', a.id], ['col.hostname', a.hostname], ['col.os', a.os], ['col.version', a.version],
      ['col.group', a.group], ['col.policy', policy_label(a.policy_etag)], ['col.enrolled', fmt_time(a.enrolled_at)],
      ['col.last_seen', fmt_time(a.last_seen)]].forEach(function (f) {
      dl.appendChild(el('dt', { text: t(f[0]) }));
      dl.appendChild(el('dd', { text: f[1] || '—' }));
    });
    head.appendChild(dl);
    head.appendChild(agent_buttons(a));
    if (a.recent_conflicts && a.recent_conflicts.length) {
      head.appendChild(el('h2', { text: t('agents.conflicts') }));
      head.appendChild(table(['col.time', 'col.app', 'col.host', 'col.reason'], a.recent_conflicts.map(function (c) {
        return el('tr', {}, [el('td', { text: fmt_time(c.time) }), el('td', { text: c.app || '' }),
          el('td', { text: c.host }), el('td', { text: c.reason || '' })]);
      })));
    }
  }).catch(fail);
  api('GET', '/logs' + api_query({ agent: id, limit: 20 })).then(function (r) {
    events.appendChild(r.logs.length ? logs_table(r.logs) : el('p', { text: t('logs.none') }));
  }).catch(fail);
}

function agent_buttons(a) {
  var bar = el('div', { 'class': 'buttons' });
  if (a.state === 'deleted') {
    bar.appendChild(el('button', { type: 'button', id: 'agent-restore', text: t('agents.restore'), onclick: function () {
      api('POST', '/agents/' + a.id + '/restore', {}).then(function () {
        go(location.hash, t('agents.restored'));
      }, fail);
    } }));
    return bar;
  }
  bar.appendChild(el('button', { type: 'button', id: 'agent-refresh', text: t('agents.refresh'), onclick: function () {
    api('POST', '/agents/' + a.id + '/tasks', { kind: 'refresh_policy' }).then(function () {
      flash(t('agents.task_queued'));
    }, fail);
  } }));
  bar.appendChild(el('button', { type: 'button', 'class': 'danger', id: 'agent-delete', text: t('agents.delete'),
    onclick: function () {
      if (!confirm(t('agents.confirm_delete', { h: a.hostname || a.id }))) return;
      api('DELETE', '/agents/' + a.id).then(function () {
        go(location.hash, t('agents.deleted'));
      }, fail);
    } }));
  return bar;
}
