/* i18n: the console's strings in Japanese and English, and the display
 * names of common UT1 categories. Only data and lookup: no DOM, no network. */
'use strict';

var I18N = {
  en: {
    'nav.dashboard': 'Dashboard', 'nav.agents': 'Agents', 'nav.policy': 'Policy',
    'nav.logs': 'Logs', 'nav.conflicts': 'Conflicts', 'nav.logout': 'Log out',
    'login.title': 'Sign in to shoji', 'login.user': 'User name', 'login.password': 'Password',
    'login.submit': 'Sign in', 'login.wrong': 'Wrong user name or password.',
    'login.locked': 'Too many failed sign-ins: this user is locked. Try again in {s} seconds.',
    'login.expired': 'Your session has ended. Please sign in again.',
    'login.loggedout': 'You have signed out.',
    'err.csrf': 'The request was refused: the security token (CSRF) is missing or wrong. Reload the page and sign in again.',
    'err.network': 'The server cannot be reached.',
    'err.generic': 'Error',
    'dash.title': 'Dashboard', 'dash.online': 'Agents online', 'dash.offline': 'Offline',
    'dash.stale': 'Stale', 'dash.chart': 'Blocked requests per hour (last 24 hours)',
    'dash.top': 'Top blocked hosts', 'dash.nodata': 'No blocked requests in this period.',
    'col.host': 'Host', 'col.blocked': 'Blocked', 'col.state': 'State', 'col.last_seen': 'Last seen',
    'col.version': 'Version', 'col.policy': 'Policy version', 'col.group': 'Group',
    'col.hostname': 'Host name', 'col.os': 'OS', 'col.enrolled': 'Enrolled', 'col.time': 'Time',
    'col.agent': 'Agent', 'col.app': 'Application', 'col.url': 'URL', 'col.category': 'Category',
    'col.action': 'Action', 'col.status': 'Status', 'col.rule': 'Rule', 'col.reason': 'Reason',
    'col.events': 'Events', 'col.agents': 'Agents', 'col.first': 'First seen', 'col.catalog': 'Catalog entry',
    'col.suggestion': 'Suggested rule', 'col.comment': 'Comment', 'col.by': 'By', 'col.id': 'Id',
    'state.online': 'online', 'state.offline': 'offline', 'state.stale': 'stale', 'state.deleted': 'deleted',
    'agents.title': 'Agents', 'agents.none': 'No agents enrolled yet.', 'agents.show_deleted': 'Show deleted',
    'agents.detail': 'Agent', 'agents.delete': 'Delete', 'agents.restore': 'Restore',
    'agents.confirm_delete': 'Delete agent {h}? Its credential stops working at once.',
    'agents.deleted': 'Agent deleted.', 'agents.restored': 'Agent restored.',
    'agents.events': 'Recent events', 'agents.conflicts': 'Recent conflicts', 'agents.back': 'Back to the list',
    'agents.refresh': 'Refresh policy now', 'agents.task_queued': 'Task queued.',
    'pol.title': 'Policy', 'pol.select': 'Policy', 'pol.none': 'No policy yet. Create one:',
    'pol.create': 'Create', 'pol.name': 'Name', 'pol.version': 'version {v}',
    'pol.default_action': 'Default action', 'pol.template': 'Template', 'pol.template_none': '(none)',
    'pol.categories': 'Categories', 'pol.cat_inherit': '(default)', 'pol.add_category': 'Add category',
    'pol.lists': 'Allow and block lists (one pattern per line)',
    'pol.allow': 'Always allow', 'pol.block': 'Always block', 'pol.bypass': 'Bypass (neither decoded nor filtered)',
    'pol.view_only': 'View only',
    'pol.decode': 'HTTPS inspection', 'pol.exclude_hosts': 'Decode exclusions (hosts, one per line)',
    'pol.skip_categories': 'Do not decode these categories (one per line)',
    'pol.disabled_apps': 'Applications without filtering (one per line; "app: host, host" limits it to hosts)',
    'pol.write_restriction': 'Write restriction: uploads blocked in these categories (one per line)',
    'pol.safe_search': 'Safe search', 'pol.comment': 'Comment for this version', 'pol.save': 'Save as new version',
    'pol.saved': 'Saved version {v}.', 'pol.conflict': 'Someone saved another version meanwhile. Reload and apply your change again.',
    'pol.catalog': 'Compatibility catalog', 'pol.catalog_missing': 'The compatibility catalog (compat.json) is not available.',
    'pol.apply': 'Apply', 'pol.applied': 'Applied {id} to the form: review, then save.',
    'pol.versions': 'Versions', 'pol.diff': 'Diff with current', 'pol.rollback': 'Roll back to this version',
    'pol.rolled_back': 'Rolled back: new version {v}.', 'pol.confirm_rollback': 'Make version {v} current again (as a new version)?',
    'pol.group': 'Assigned to group', 'pol.groups': 'Groups', 'pol.other_keys': 'Other keys kept as they are',
    'pol.current': 'current', 'pol.show': 'Show',
    'action.allow': 'allow', 'action.block': 'block', 'action.view_only': 'view only',
    'logs.title': 'Log search', 'logs.from': 'From', 'logs.to': 'To', 'logs.any': '(any)',
    'logs.search': 'Search', 'logs.csv': 'Export CSV', 'logs.next': 'Next page', 'logs.prev': 'Previous page',
    'logs.none': 'No matching log lines.', 'logs.page': 'Page {n}', 'logs.limit': 'Per page',
    'conf.title': 'Conflicts (learned exclusions across agents)', 'conf.none': 'No conflicts reported.',
    'conf.permanent': 'Make permanent', 'conf.made': 'Added {rule} to policy {p} as version {v}.',
    'conf.policy': 'Add to policy', 'conf.nopolicy': 'Create a policy first.',
    'common.loading': 'Loading…', 'common.yes': 'yes', 'common.no': 'no'
  },
  ja: {
    'nav.dashboard': 'ダッシュボード', 'nav.agents': 'エージェント', 'nav.policy': 'ポリシー',
    'nav.logs': 'ログ', 'nav.conflicts': 'コンフリクト', 'nav.logout': 'ログアウト',
    'login.title': 'shoji にログイン', 'login.user': 'ユーザー名', 'login.password': 'パスワード',
    'login.submit': 'ログイン', 'login.wrong': 'ユーザー名またはパスワードが違います。',
    'login.locked': 'ログインの失敗が続いたため、このユーザーはロックされています。{s} 秒後に再試行してください。',
    'login.expired': 'セッションの有効期限が切れました。もう一度ログインしてください。',
    'login.loggedout': 'ログアウトしました。',
    'err.csrf': 'リクエストは拒否されました: セキュリティトークン (CSRF) がないか、正しくありません。ページを再読み込みしてログインし直してください。',
    'err.network': 'サーバーに接続できません。',
    'err.generic': 'エラー',
    'dash.title': 'ダッシュボード', 'dash.online': 'オンラインのエージェント', 'dash.offline': 'オフライン',
    'dash.stale': '長期未接続', 'dash.chart': '1 時間ごとのブロック数 (過去 24 時間)',
    'dash.top': 'ブロックの多いホスト', 'dash.nodata': 'この期間にブロックはありません。',
    'col.host': 'ホスト', 'col.blocked': 'ブロック数', 'col.state': '状態', 'col.last_seen': '最終接続',
    'col.version': 'バージョン', 'col.policy': 'ポリシー版', 'col.group': 'グループ',
    'col.hostname': 'ホスト名', 'col.os': 'OS', 'col.enrolled': '登録日時', 'col.time': '日時',
    'col.agent': 'エージェント', 'col.app': 'アプリケーション', 'col.url': 'URL', 'col.category': 'カテゴリ',
    'col.action': '動作', 'col.status': 'ステータス', 'col.rule': 'ルール', 'col.reason': '理由',
    'col.events': '件数', 'col.agents': 'エージェント数', 'col.first': '初回', 'col.catalog': 'カタログの該当項目',
    'col.suggestion': '提案されたルール', 'col.comment': 'コメント', 'col.by': '作成者', 'col.id': 'ID',
    'state.online': 'オンライン', 'state.offline': 'オフライン', 'state.stale': '長期未接続', 'state.deleted': '削除済み',
    'agents.title': 'エージェント', 'agents.none': '登録されたエージェントはまだありません。', 'agents.show_deleted': '削除済みも表示',
    'agents.detail': 'エージェント', 'agents.delete': '削除', 'agents.restore': '復元',
    'agents.confirm_delete': 'エージェント {h} を削除しますか? 認証情報は直ちに無効になります。',
    'agents.deleted': 'エージェントを削除しました。', 'agents.restored': 'エージェントを復元しました。',
    'agents.events': '最近のイベント', 'agents.conflicts': '最近のコンフリクト', 'agents.back': '一覧に戻る',
    'agents.refresh': '今すぐポリシーを取得', 'agents.task_queued': 'タスクを登録しました。',
    'pol.title': 'ポリシー', 'pol.select': 'ポリシー', 'pol.none': 'ポリシーがまだありません。作成:',
    'pol.create': '作成', 'pol.name': '名前', 'pol.version': '第 {v} 版',
    'pol.default_action': '既定の動作', 'pol.template': 'テンプレート', 'pol.template_none': '(なし)',
    'pol.categories': 'カテゴリ', 'pol.cat_inherit': '(既定)', 'pol.add_category': 'カテゴリを追加',
    'pol.lists': '許可・ブロックリスト (1 行に 1 パターン)',
    'pol.allow': '常に許可', 'pol.block': '常にブロック', 'pol.bypass': 'バイパス (復号もフィルタもしない)',
    'pol.view_only': '閲覧のみ',
    'pol.decode': 'HTTPS 検査', 'pol.exclude_hosts': '復号の除外 (ホスト、1 行に 1 つ)',
    'pol.skip_categories': '復号しないカテゴリ (1 行に 1 つ)',
    'pol.disabled_apps': 'フィルタを無効にするアプリケーション (1 行に 1 つ。"app: host, host" でホストを限定)',
    'pol.write_restriction': '書き込み制限: これらのカテゴリではアップロードをブロック (1 行に 1 つ)',
    'pol.safe_search': 'セーフサーチ', 'pol.comment': 'この版のコメント', 'pol.save': '新しい版として保存',
    'pol.saved': '第 {v} 版を保存しました。', 'pol.conflict': 'その間に別の版が保存されました。再読み込みして変更をやり直してください。',
    'pol.catalog': '互換性カタログ', 'pol.catalog_missing': '互換性カタログ (compat.json) を読み込めません。',
    'pol.apply': '適用', 'pol.applied': '{id} をフォームに適用しました。確認して保存してください。',
    'pol.versions': '版の履歴', 'pol.diff': '現在の版との差分', 'pol.rollback': 'この版に戻す',
    'pol.rolled_back': '戻しました: 第 {v} 版。', 'pol.confirm_rollback': '第 {v} 版を (新しい版として) 現在の版に戻しますか?',
    'pol.group': '割り当てグループ', 'pol.groups': 'グループ', 'pol.other_keys': 'そのまま保持されるその他のキー',
    'pol.current': '現在', 'pol.show': '表示',
    'action.allow': '許可', 'action.block': 'ブロック', 'action.view_only': '閲覧のみ',
    'logs.title': 'ログ検索', 'logs.from': '開始', 'logs.to': '終了', 'logs.any': '(すべて)',
    'logs.search': '検索', 'logs.csv': 'CSV 出力', 'logs.next': '次のページ', 'logs.prev': '前のページ',
    'logs.none': '該当するログはありません。', 'logs.page': '{n} ページ', 'logs.limit': '件数/ページ',
    'conf.title': 'コンフリクト (エージェントが学習した除外)', 'conf.none': '報告されたコンフリクトはありません。',
    'conf.permanent': '恒久化', 'conf.made': '{rule} をポリシー {p} の第 {v} 版として追加しました。',
    'conf.policy': '追加先ポリシー', 'conf.nopolicy': '先にポリシーを作成してください。',
    'common.loading': '読み込み中…', 'common.yes': 'はい', 'common.no': 'いいえ'
  }
};

/* Common UT1 category names (docs/POLICY.md) with display names. */
var CATEGORIES = [
  ['adult', 'Adult', 'アダルト'], ['porn', 'Pornography', 'ポルノ'],
  ['gambling', 'Gambling', 'ギャンブル'], ['games', 'Games', 'ゲーム'],
  ['social_networks', 'Social networks', 'SNS'], ['webmail', 'Web mail', 'Web メール'],
  ['chat', 'Chat', 'チャット'], ['dating', 'Dating', '出会い'],
  ['malware', 'Malware', 'マルウェア'], ['phishing', 'Phishing', 'フィッシング'],
  ['cryptojacking', 'Cryptojacking', 'クリプトジャッキング'], ['hacking', 'Hacking', 'ハッキング'],
  ['warez', 'Warez', '違法ソフト'], ['drugs', 'Drugs', '薬物'],
  ['violence', 'Violence', '暴力'], ['aggressive', 'Aggressive', '攻撃的'],
  ['dangerous_material', 'Dangerous material', '危険物'], ['sect', 'Sects', 'カルト'],
  ['proxy', 'Proxies', 'プロキシ'], ['vpn', 'VPN', 'VPN'], ['doh', 'DNS over HTTPS', 'DNS over HTTPS'],
  ['audio-video', 'Audio and video', '音楽・動画'], ['radio', 'Radio', 'ラジオ'],
  ['download', 'Downloads', 'ダウンロード'], ['filehosting', 'File hosting', 'ファイル共有'],
  ['remote-control', 'Remote control', 'リモート操作'], ['shopping', 'Shopping', 'ショッピング'],
  ['bank', 'Banks', '銀行'], ['financial', 'Finance', '金融'], ['bitcoin', 'Cryptocurrency', '暗号資産'],
  ['forums', 'Forums', '掲示板'], ['blog', 'Blogs', 'ブログ'], ['manga', 'Manga', '漫画'],
  ['ads', 'Advertising', '広告'], ['publicite', 'Advertising (publicite)', '広告 (publicite)'],
  ['shortener', 'URL shorteners', '短縮 URL'], ['dynamic-dns', 'Dynamic DNS', 'ダイナミック DNS'],
  ['jobsearch', 'Job search', '求人'], ['astrology', 'Astrology', '占い'],
  ['celebrity', 'Celebrities', '芸能人'], ['fakenews', 'Fake news', 'フェイクニュース'],
  ['ai', 'AI services', 'AI サービス'], ['educational_games', 'Educational games', '学習ゲーム'],
  ['sexual_education', 'Sexual education', '性教育'], ['child', 'For children', '子ども向け'],
  ['mixed_adult', 'Mixed adult content', '成人向け混在'], ['lingerie', 'Lingerie', '下着'],
  ['marketingware', 'Marketingware', 'マーケティングウェア'], ['stalkerware', 'Stalkerware', 'ストーカーウェア']
];

var TEMPLATES = ['elementary', 'junior_high', 'high_school', 'university', 'enterprise'];

var LANG = 'en';

function i18n_pick(nav) {
  var l = String(nav || '').toLowerCase();
  return l.indexOf('ja') === 0 ? 'ja' : 'en';
}

function t(key, vars) {
  var s = (I18N[LANG] && I18N[LANG][key]) || I18N.en[key] || key;
  if (vars) {
    Object.keys(vars).forEach(function (k) { s = s.split('{' + k + '}').join(String(vars[k])); });
  }
  return s;
}

function category_label(name) {
  for (var i = 0; i < CATEGORIES.length; i++) {
    if (CATEGORIES[i][0] === name) return LANG === 'ja' ? CATEGORIES[i][2] : CATEGORIES[i][1];
  }
  return name;
}
