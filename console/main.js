/* main: start-up (language, login form, session check). Loaded last. */
'use strict';

(function () {
  apply_lang(localStorage.getItem('shoji_lang') || i18n_pick(navigator.language));
  $('lang').addEventListener('change', function () { apply_lang($('lang').value); route(); });
  $('login-form').addEventListener('submit', login_submit);
  $('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  api.on_unauthorized = function () {
    if (APP.user) show_login(t('login.expired'));
  };
  api('GET', '/session').then(function (s) { logged_in(s.username); },
    function () { show_login(''); });
})();
