/* api: calls to shoji-server's /api/v1 with the session cookie and the
 * CSRF token on every change. Never stores the password; the CSRF token
 * lives in sessionStorage (this tab only) so a reload keeps the session. */
'use strict';

var API_BASE = '/api/v1';
var CSRF_KEY = 'shoji_csrf';

function ApiError(status, body) {
  this.status = status;
  this.body = body || {};
  this.field = this.body.field || null;
  this.message = this.body.error || ('HTTP ' + status);
}

function api_csrf() { return sessionStorage.getItem(CSRF_KEY); }
function api_set_csrf(tok) {
  if (tok) sessionStorage.setItem(CSRF_KEY, tok); else sessionStorage.removeItem(CSRF_KEY);
}

/* Resolves to the parsed JSON body; rejects with ApiError. A 401 on any
 * call but login means the session ended: the app's on_unauthorized hook
 * shows the login page. */
function api(method, path, body) {
  var headers = { 'Accept': 'application/json' };
  var opts = { method: method, headers: headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET') {
    var tok = api_csrf();
    if (tok) headers['X-CSRF-Token'] = tok;
  }
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  return fetch(API_BASE + path, opts).then(function (r) {
    return r.text().then(function (text) {
      var j = null;
      try { j = text ? JSON.parse(text) : null; } catch (e) { j = null; }
      if (r.ok) return j;
      var err = new ApiError(r.status, j);
      err.retry_after = r.headers.get('Retry-After');
      if (r.status === 401 && path !== '/login' && api.on_unauthorized) api.on_unauthorized();
      throw err;
    });
  }, function () {
    throw new ApiError(0, { error: t('err.network') });
  });
}

/* "a=1&b=2" from an object, skipping empty values. */
function api_query(params) {
  var parts = [];
  Object.keys(params).forEach(function (k) {
    var v = params[k];
    if (v !== undefined && v !== null && v !== '') {
      parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(v));
    }
  });
  return parts.length ? '?' + parts.join('&') : '';
}

/* A message for the user from an ApiError (CSRF refusals get a clear one). */
function api_message(e) {
  if (e && e.status === 403 && e.field === 'X-CSRF-Token') return t('err.csrf');
  return (e && e.message) ? e.message : String(e);
}
