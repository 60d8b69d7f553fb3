// Small DOM helpers. Text always goes in as text (never as HTML), so what a
// recipe or the server says cannot inject markup into the page.

import { get } from './api.js';

/** Builds an element: h('a', {href: '#/'}, 'Catalog', child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'checked' || key === 'value' || key === 'selected' || key === 'disabled') {
      el[key] = value;
      if (key !== 'value') el.setAttribute(key, '');
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Says `text` to screen readers, politely. */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A fresh text node after a tick, so the same words are announced again.
  setTimeout(() => { region.textContent = text; }, 30);
}

let counter = 0;
/** An id unique within the page. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * Asks the operator to confirm in a modal dialog; resolves true or false.
 * Focus starts on Cancel (the safe choice) and returns to where it was.
 */
export function confirmAction({ title, body, confirm = 'Confirm', danger = false }) {
  const dialog = document.getElementById('confirm');
  const returnTo = document.activeElement;
  const titleId = uid('confirm-title');
  const bodyId = uid('confirm-body');
  return new Promise((resolve) => {
    const cancelButton = h('button', { type: 'button', class: 'button secondary', value: 'cancel' }, 'Cancel');
    const okButton = h('button', { type: 'button', class: danger ? 'button danger' : 'button', value: 'ok' }, confirm);
    fill(
      dialog,
      h('h2', { id: titleId }, title),
      h('p', { id: bodyId }, body),
      h('div', { class: 'actions' }, cancelButton, okButton),
    );
    dialog.setAttribute('aria-labelledby', titleId);
    dialog.setAttribute('aria-describedby', bodyId);
    const done = (answer) => {
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      if (returnTo && typeof returnTo.focus === 'function' && document.contains(returnTo)) returnTo.focus();
      resolve(answer);
    };
    const onClose = () => done(false);
    dialog.addEventListener('close', onClose);
    cancelButton.addEventListener('click', () => done(false));
    okButton.addEventListener('click', () => done(true));
    dialog.showModal();
    cancelButton.focus();
  });
}

/** `1536` -> `1.5 GiB` for MiB values. */
export function mib(value) {
  if (value >= 1024 && value % 256 === 0) return `${value / 1024} GiB`;
  return `${value} MiB`;
}

/** A short form of a digest, the whole one in a tooltip. */
export function shortDigest(digest) {
  return h('code', { class: 'digest', title: digest }, `${digest.slice(0, 12)}…`);
}

/** Milliseconds as `12.3 s`. */
export function seconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A status line that screen readers read when it changes. */
export function notice(kind, ...children) {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...children);
}

/** An http(s) URL as a link that opens elsewhere; anything else as text. */
export function externalLink(url, text = url) {
  if (typeof url === 'string' && /^https?:\/\//i.test(url)) {
    return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, text);
  }
  return h('span', {}, text);
}

/** Reads an app's secrets (GET /apps/ID/secrets) into `box`; `button`, if
 * given, goes once they are shown. */
export async function showSecrets(appId, box, button) {
  try {
    const { secrets } = await get(`/apps/${encodeURIComponent(appId)}/secrets`);
    const names = Object.keys(secrets);
    fill(box, names.length
      ? h('dl', { class: 'secrets' }, names.map((name) => [h('dt', {}, name), h('dd', {}, h('code', { class: 'secret-value' }, secrets[name]))]))
      : h('p', {}, 'This app has no secrets.'));
    if (button) button.remove();
  } catch (err) {
    fill(box, notice('error', err.message));
  }
}

/**
 * The error slot of a form field: `showError(text)` shows or clears `text`
 * under `input`, marks it invalid, and names the error in its
 * aria-describedby after the hint (`hintId`).
 */
export function fieldError(id, input, hintId) {
  const errorId = `${id}-error`;
  const element = h('p', { class: 'field-error', id: errorId, hidden: true });
  const describe = () => input.setAttribute('aria-describedby', element.hidden ? hintId : `${hintId} ${errorId}`);
  describe();
  return {
    element,
    showError(text) {
      element.textContent = text;
      element.hidden = !text;
      input.setAttribute('aria-invalid', text ? 'true' : 'false');
      describe();
    },
  };
}
