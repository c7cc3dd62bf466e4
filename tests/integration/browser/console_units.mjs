// The console's pure functions, without a browser: console/*.js loaded into
// a node vm context (they are plain browser scripts). CSV cells (quoting,
// formula neutralising), the policy line diff, catalog host patterns,
// conflict suggestion parsing, the policy document built from lists.
import vm from 'node:vm';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'console');
const ctx = vm.createContext({ console, sessionStorage: { getItem() { return null; } } });
for (const f of ['i18n.js', 'api.js', 'app.js', 'logs.js', 'policy.js', 'policy_versions.js', 'conflicts.js']) {
  vm.runInContext(fs.readFileSync(path.join(dir, f), 'utf8'), ctx, { filename: f });
}
let failures = 0;
function eq(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) { failures++; console.log(`FAIL ${what}: got ${g}, want ${w}`); }
}
const run = (src) => vm.runInContext(src, ctx);

eq(run(`csv_cell('a,b')`), '"a,b"', 'comma quoted');
eq(run(`csv_cell('say "hi"')`), '"say ""hi"""', 'quotes doubled');
eq(run(`csv_cell('=HYPERLINK("x")')`), `"'=HYPERLINK(""x"")"`, 'formula neutralised');
eq(run(`csv_cell('-1+2')`), "'-1+2", 'leading minus neutralised');
eq(run(`csv_cell(undefined)`), '', 'undefined is empty');
eq(run(`csv_of([{time: 0, agent_id: 'a', agent_hostname: 'h', line: {host: 'x', categories: ['games', 'ads'], status: 403}}])`),
  'time,agent_id,agent_hostname,app,method,url,host,status,categories,action,rule,mode,bytes_in,bytes_out\r\n' +
  '1970-01-01T00:00:00.000Z,a,h,,,,x,403,games ads,,,,,\r\n', 'csv row');

eq(run(`line_diff(['a','b','c'], ['a','c','d'])`), [[' ', 'a'], ['-', 'b'], [' ', 'c'], ['+', 'd']], 'line diff');
eq(run(`line_diff([], ['x'])`), [['+', 'x']], 'diff from empty');
eq(run(`JSON.stringify(canonical({b: 1, a: {d: 2, c: [3]}}))`), '{"a":{"c":[3],"d":2},"b":1}', 'canonical order');

eq(run(`glob_match('*icrc.trendmicro.com', 'x.icrc.trendmicro.com')`), true, 'glob match');
eq(run(`glob_match('*icrc.trendmicro.com', 'icrc.trendmicro.com.evil.test')`), false, 'glob anchored');
eq(run(`glob_match('a.b', 'aXb')`), false, 'dot is literal');
eq(run(`app_base('C:\\\\Program Files\\\\NTRTSCAN.EXE')`), 'ntrtscan', 'app base name');

eq(run(`conflict_rule({host: 'h.test', app: 'curl', suggestion: 'disabled_apps += {"app": "curl", "hosts": ["h.test"]}'})`),
  { key: 'disabled_apps', value: { app: 'curl', hosts: ['h.test'] } }, 'agent suggestion');
eq(run(`conflict_rule({host: 'x.icrc.trendmicro.com', suggestion: 'decode.exclude_hosts: "*icrc.trendmicro.com"'})`),
  { key: 'decode.exclude_hosts', value: '*icrc.trendmicro.com' }, 'API example suggestion');
eq(run(`conflict_rule({host: 'h.test', app: '', suggestion: ''})`), { key: 'decode.exclude_hosts', value: 'h.test' },
  'no suggestion, no app');
eq(run(`add_rule(add_rule({decode: {enabled: true}}, {key: 'decode.exclude_hosts', value: 'a'}), {key: 'decode.exclude_hosts', value: 'a'})`),
  { decode: { enabled: true, exclude_hosts: ['a'] } }, 'rule added once, other keys kept');

eq(run(`app_entry('NTRTSCAN')`), 'NTRTSCAN', 'plain app');
eq(run(`app_entry('skype: a.test, b.test')`), { app: 'skype', hosts: ['a.test', 'b.test'] }, 'app with hosts');
eq(run(`lines_of(['x', {app: 'y', hosts: ['h']}])`), 'x\ny: h', 'lists to lines');
eq(run(`list_of(' a \\n\\n b ')`), ['a', 'b'], 'lines to list');

for (const l of ['en', 'ja']) {
  const keys = Object.keys(run(`I18N.${l}`)).sort();
  eq(keys, Object.keys(run('I18N.en')).sort(), `the ${l} strings have every key`);
}
eq(run(`i18n_pick('ja-JP')`), 'ja', 'ja browser');
eq(run(`i18n_pick('fr-FR')`), 'en', 'other browsers get English');

console.log(failures ? `${failures} FAILED` : 'OK');
process.exit(failures ? 1 : 0);
