/**
 * The development demo page: one broker client, a token countdown, the token's claims, a call to the
 * demo API through the proxy and a log of what the helper did. Everything reaches the DOM through
 * textContent, so nothing a server answers is ever parsed as HTML.
 */
import { BrokerClientError, createBrokerClient } from './client.js';

const MAX_LOG_ENTRIES = 100;
const TOKEN_REASONS = {
  initial: 'Token fetched',
  renewal: 'Token renewed ahead of expiry',
  refresh: 'New token on request',
  rejected: 'Token replaced after a refusal',
};

const element = (id) => document.getElementById(id);
const ui = {
  tokenState: element('token-state'),
  remaining: element('remaining'),
  lifetime: element('lifetime'),
  renewal: element('renewal'),
  newToken: element('new-token'),
  call: element('call'),
  callStatus: element('call-status'),
  answer: element('answer'),
  log: element('log'),
  logEmpty: element('log-empty'),
  clearLog: element('clear-log'),
};

const client = createBrokerClient({ onEvent: onClientEvent });

function onClientEvent(event) {
  switch (event.type) {
    case 'token': {
      const claims = decodeClaims(event.info.token);
      showClaims(claims);
      const jti = typeof claims?.jti === 'string' ? `jti ${claims.jti.slice(0, 8)}…, ` : '';
      log('ok', TOKEN_REASONS[event.reason], `${jti}valid ${event.info.expiresIn} s`);
      break;
    }
    case 'cleared':
      showClaims(undefined);
      log('info', 'Token dropped', 'the next call fetches a new one');
      break;
    case 'wait':
      log(
        'warn',
        `Token endpoint busy (HTTP ${event.status})`,
        `asking again in ${event.retryAfter} s`,
        event.code,
      );
      break;
    case 'retry':
      log('warn', 'The proxy refused the token', 'retrying once with a new token', event.code);
      break;
    case 'error':
      log('error', 'Background renewal failed', event.error.message, event.error.code);
      break;
  }
}

/** The JWT payload, base64url-decoded. Display only: no signature is checked here, the broker does that. */
function decodeClaims(token) {
  const part = token.split('.')[1];
  if (!part) return undefined;
  try {
    const base64 = part
      .replaceAll('-', '+')
      .replaceAll('_', '/')
      .padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}

function showClaims(claims) {
  const text = (value) => (value === undefined ? '–' : String(value));
  element('claim-origin').textContent = text(claims?.origin);
  element('claim-ip').textContent = claims && claims.ip === undefined ? 'not bound' : text(claims?.ip);
  element('claim-exp').textContent = formatEpoch(claims?.exp);
  element('claim-iat').textContent = formatEpoch(claims?.iat);
  element('claim-jti').textContent = text(claims?.jti);
  element('claim-iss').textContent = text(claims?.iss);
  element('claim-aud').textContent = Array.isArray(claims?.aud) ? claims.aud.join(', ') : text(claims?.aud);
}

function formatEpoch(seconds) {
  if (typeof seconds !== 'number') return '–';
  return `${seconds} (${new Date(seconds * 1000).toLocaleTimeString()})`;
}

function setBadge(node, tone, text) {
  node.className = `badge ${tone}`;
  node.textContent = text;
}

function renderCountdown() {
  const info = client.tokenInfo();
  if (!info) {
    ui.remaining.textContent = '–';
    ui.lifetime.value = 0;
    return;
  }
  const now = Date.now();
  const left = Math.max(0, info.expiresAt - now) / 1000;
  const untilRenewal = Math.max(0, info.renewAt - now) / 1000;
  ui.remaining.textContent = left.toFixed(left < 10 ? 1 : 0);
  ui.lifetime.value = left / info.expiresIn;
  if (left === 0) {
    setBadge(ui.tokenState, 'error', 'expired');
    ui.renewal.textContent = 'Expired; the next call fetches a new token.';
  } else if (untilRenewal === 0) {
    setBadge(ui.tokenState, 'warn', 'renewing');
    ui.renewal.textContent = 'Inside the renewal margin: a new token is on its way.';
  } else {
    setBadge(ui.tokenState, 'ok', 'valid');
    ui.renewal.textContent = `Renews automatically in ${untilRenewal.toFixed(untilRenewal < 10 ? 1 : 0)} s, ${((info.expiresAt - info.renewAt) / 1000).toFixed(1)} s before expiry.`;
  }
}

function log(tone, what, detail, code) {
  const entry = document.createElement('li');
  entry.className = `entry ${tone}`;
  const time = document.createElement('time');
  const at = new Date();
  time.dateTime = at.toISOString();
  time.textContent = at.toLocaleTimeString();
  const title = document.createElement('span');
  title.className = 'what';
  title.textContent = what;
  const rest = document.createElement('span');
  rest.className = 'detail';
  rest.textContent = detail ?? '';
  entry.append(time, title, rest);
  if (code) {
    const badge = document.createElement('code');
    badge.textContent = code;
    entry.append(badge);
  }
  ui.log.prepend(entry);
  while (ui.log.children.length > MAX_LOG_ENTRIES) ui.log.lastElementChild.remove();
  ui.logEmpty.hidden = true;
}

function logFailure(what, error) {
  if (error instanceof BrokerClientError) {
    log('error', what, error.detail ?? error.message, error.code);
  } else {
    log('error', what, error instanceof Error ? error.message : String(error));
  }
}

async function callApi() {
  ui.call.disabled = true;
  setBadge(ui.callStatus, '', 'calling…');
  const started = performance.now();
  try {
    const response = await client.fetch('/hello', { headers: { accept: 'application/json' } });
    const elapsed = Math.round(performance.now() - started);
    const text = await response.text();
    const body = parseJson(text);
    ui.answer.textContent = body === undefined ? text || '(empty body)' : JSON.stringify(body, null, 2);
    const contentType = response.headers.get('content-type') ?? '';
    const code = contentType.startsWith('application/problem+json') ? body?.code : undefined;
    setBadge(ui.callStatus, response.ok ? 'ok' : 'error', `HTTP ${response.status} · ${elapsed} ms`);
    if (response.ok) log('info', 'GET /api/proxy/hello', `HTTP ${response.status} in ${elapsed} ms`);
    else log('error', 'GET /api/proxy/hello failed', body?.detail ?? `HTTP ${response.status}`, code);
  } catch (error) {
    setBadge(ui.callStatus, 'error', 'failed');
    ui.answer.textContent = error instanceof Error ? error.message : String(error);
    logFailure('The call could not be made', error);
  } finally {
    ui.call.disabled = false;
  }
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function newToken() {
  ui.newToken.disabled = true;
  try {
    await client.refresh();
  } catch (error) {
    logFailure('No new token', error);
    setBadge(ui.tokenState, 'error', 'unavailable');
  } finally {
    ui.newToken.disabled = false;
  }
}

ui.call.addEventListener('click', callApi);
ui.newToken.addEventListener('click', newToken);
ui.clearLog.addEventListener('click', () => {
  ui.log.replaceChildren();
  ui.logEmpty.hidden = false;
});

setInterval(renderCountdown, 250);
client
  .getToken()
  .then(renderCountdown)
  .catch((error) => {
    logFailure('No token', error);
    setBadge(ui.tokenState, 'error', 'unavailable');
  });
