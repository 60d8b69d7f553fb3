// Settings: the API token this browser uses, the installed bundles and their
// publishers, and installing a bundle (a file or a URL): always reviewed
// first (what it may do, who signed it, what grew), or why it is not trusted.

import { ApiError, get, getToken, isAuthError, request, setToken } from './api.js';
import { announce, fill, h, notice, shortDigest } from './dom.js';
import { grantsList } from './recipe.js';

function tokenSection() {
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-hint', value: getToken() });
  const result = h('div', { id: 'token-result' });
  const forget = h('button', { type: 'button', class: 'button secondary', id: 'token-forget' }, 'Forget');
  const form = h(
    'form',
    { id: 'token-form' },
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'API token'), input,
      h('p', { class: 'hint', id: 'token-hint' }, 'Made on the server with ', h('code', {}, 'proximity token create --name NAME'), '. Kept in this browser only (its local storage) and sent as a bearer token. The catalog needs none.')),
    h('p', { class: 'actions' }, h('button', { type: 'submit', class: 'button' }, 'Save'), ' ', forget),
    result,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    try {
      await get('/apps');
      fill(result, notice('ok', 'Saved. The server accepts this token.'));
      document.dispatchEvent(new CustomEvent('proximity:token'));
    } catch (err) {
      fill(result, notice('error', isAuthError(err) ? `Saved, but the server refuses it: ${err.message}.` : `Saved; the server could not check it: ${err.message}`));
    }
  });
  forget.addEventListener('click', () => {
    setToken('');
    input.value = '';
    fill(result, notice('ok', 'The token was removed from this browser.'));
    document.dispatchEvent(new CustomEvent('proximity:token'));
  });
  return h('section', { 'aria-labelledby': 'token-h' }, h('h2', { id: 'token-h' }, 'API token'), form);
}

function bundlesTable(list) {
  if (!list.installs) return h('p', {}, 'This server serves a directory of recipe sources (--catalog): it installs no bundles.');
  if (!list.bundles.length) return h('p', { id: 'bundles-empty' }, 'No bundle is installed yet.');
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { id: 'bundles-table', class: 'stack' },
      h('caption', { class: 'visually-hidden' }, 'Installed bundles'),
      h('thead', {}, h('tr', {}, ['Recipe', 'Version', 'Publisher', 'Digest'].map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        {},
        list.bundles.map((b) =>
          h(
            'tr',
            { dataset: { bundle: b.id } },
            h('th', { scope: 'row', 'data-label': 'Recipe' }, h('a', { href: `#/recipes/${b.id}` }, b.id)),
            h('td', { 'data-label': 'Version' }, b.version),
            h('td', { 'data-label': 'Publisher' }, b.signers.length
              ? b.signers.map((s, i) => [i ? ', ' : '', s.name, s.key_id ? h('span', { class: 'muted small' }, ` (key ${s.key_id})`) : '', s.trusted ? '' : h('strong', {}, s.key_id ? ' — no longer trusted' : ' — not trusted: installed before key ids were recorded')])
              : h('em', {}, 'no trusted signer: allowed by its digest')),
            h('td', { 'data-label': 'Digest' }, shortDigest(b.digest)),
          ),
        ),
      ),
    ),
  );
}

async function bundlesSection(signal) {
  const body = h('div', { id: 'bundles' });
  const section = h('section', { 'aria-labelledby': 'bundles-h' }, h('h2', { id: 'bundles-h' }, 'Installed bundles'), body);
  let list = null;
  const load = async () => {
    try {
      list = await get('/bundles', { signal });
      fill(
        body,
        bundlesTable(list),
        h('h3', {}, 'Trusted publisher keys'),
        list.trusted_keys.length
          ? h('ul', { id: 'trusted-keys' }, list.trusted_keys.map((k) => h('li', {}, k.name, h('span', { class: 'muted small' }, ` (key ${k.key_id})`))))
          : h('p', {}, 'None: the server refuses every bundle until a key is in its trusted-keys directory.'),
      );
    } catch (err) {
      if (err.name === 'AbortError') return;
      fill(body, notice('error', isAuthError(err) ? 'Enter a token above to see the installed bundles.' : err.message));
    }
  };
  await load();
  return { section, reload: load, list: () => list };
}

function installSection(bundles) {
  const fileInput = h('input', { id: 'bundle-file', type: 'file', accept: '.prox,application/octet-stream' });
  const urlInput = h('input', { id: 'bundle-url', type: 'url', inputmode: 'url', placeholder: 'https://…/nginx-0.2.0.prox', autocomplete: 'off' });
  const review = h('div', { id: 'bundle-review', tabindex: '-1' });
  const uploadButton = h('button', { type: 'submit', class: 'button' }, 'Upload and review');
  const urlButton = h('button', { type: 'submit', class: 'button' }, 'Fetch and review');

  const busy = (on) => {
    uploadButton.disabled = on;
    urlButton.disabled = on;
  };
  const send = (source, query) => (source.file
    ? request('/recipes', { method: 'POST', body: source.file, contentType: 'application/octet-stream', query })
    : request('/recipes', { method: 'POST', json: { url: source.url }, query }));
  const cancelButton = () => {
    const cancel = h('button', { type: 'button', class: 'button secondary' }, 'Cancel');
    cancel.addEventListener('click', () => fill(review, notice('ok', 'Not installed.')));
    return cancel;
  };

  // First the server checks everything and installs nothing: the operator
  // reads what the bundle may do, then installs (or not).
  const attempt = async (source, query = {}) => {
    fill(review, h('p', { class: 'muted', role: 'status' }, 'Verifying the bundle…'));
    busy(true);
    try {
      showReview(await send(source, { ...query, review: true }), source, query);
    } catch (err) {
      showRefusal(err, source, query);
    } finally {
      busy(false);
    }
    review.focus();
  };

  const install = async (source, query) => {
    fill(review, h('p', { class: 'muted', role: 'status' }, 'Installing…'));
    busy(true);
    try {
      const installed = await send(source, query);
      fill(
        review,
        notice(
          'ok',
          h('p', { id: 'install-result' }, h('strong', {}, installed.unchanged
            ? `${installed.id} ${installed.version} was already installed from this bundle; nothing changed.`
            : `${installed.id} ${installed.version} installed${installed.previous_version ? ` (replacing ${installed.previous_version})` : ''}.`)),
          h('p', {}, installed.signers.length ? `Signed by ${installed.signers.join(', ')}.` : 'No trusted key signed it: allowed by its digest.'),
          installed.added_grants.length ? [h('p', {}, 'Newly granted:'), grantsList(installed.added_grants)] : null,
        ),
      );
      announce(`${installed.id} ${installed.version} installed.`);
      await bundles.reload();
    } catch (err) {
      showRefusal(err, source, query);
    } finally {
      busy(false);
    }
    review.focus();
  };

  const signersText = (signers) => (signers.length
    ? ['Signed by ', signers.map((s, i) => [i ? ', ' : '', s.name, s.key_id ? h('span', { class: 'muted small' }, ` (key ${s.key_id})`) : '', s.trusted ? '' : h('strong', {}, ' (not trusted)')]), '.']
    : 'Not signed: allowed by its digest.');

  const showReview = (found, source, query) => {
    const name = `${found.id} ${found.version}`;
    if (found.unchanged) {
      fill(review, notice('ok', h('p', { id: 'install-result' }, `${name} is already installed from this bundle; nothing to do.`)));
      return;
    }
    const grew = found.added_grants.length > 0;
    const accept = h('button', { type: 'button', class: 'button', id: grew ? 'accept-grants' : 'install-reviewed' }, grew ? 'Accept the new grants and install' : 'Install');
    accept.addEventListener('click', () => install(source, grew ? { ...query, accept_grants: found.digest } : query));
    const all = h('ul', { class: 'grants-all' }, found.grants.map((line) => h('li', {}, line)));
    fill(
      review,
      grew
        ? h(
          'section',
          { class: 'notice warn review', id: 'grant-review', 'aria-labelledby': 'grant-review-h' },
          h('h3', { id: 'grant-review-h' }, `Review: ${name} asks for more`),
          h('p', {}, `Compared with the installed ${found.previous_version}, it may also:`),
          grantsList(found.added_grants),
          h('details', {}, h('summary', {}, 'Everything it may do'), all),
          h('p', { class: 'small' }, signersText(found.signers), ' Bundle ', shortDigest(found.digest), '. Accept only if you expected these.'),
          h('p', { class: 'actions' }, accept, ' ', cancelButton()),
        )
        : h(
          'section',
          { class: 'notice review', id: 'install-review', 'aria-labelledby': 'install-review-h' },
          h('h3', { id: 'install-review-h' }, found.previous_version ? `Review: ${name}, replacing ${found.previous_version}` : `Review: ${name}, a new recipe`),
          h('p', {}, 'Once installed, it may:'),
          found.grants.length ? all : h('p', {}, 'Nothing: this recipe asks for no capability.'),
          h('p', { class: 'small' }, signersText(found.signers), ' Bundle ', shortDigest(found.digest), '.'),
          h('p', { class: 'actions' }, accept, ' ', cancelButton()),
        ),
    );
  };

  // `query` holds what the operator already confirmed: a second refusal
  // (new grants after allowing an untrusted bundle) keeps it.
  const showRefusal = (err, source, query) => {
    if (!(err instanceof ApiError)) {
      fill(review, notice('error', err.message));
      return;
    }
    if (err.status === 401) {
      fill(review, notice('error', 'Installing needs an API token: enter it above.'));
      return;
    }
    if (err.code === 'grants-grew' && err.digest) {
      // The installed version changed since the review: review again.
      const accept = h('button', { type: 'button', class: 'button', id: 'accept-grants' }, 'Accept the new grants and install');
      const cancel = cancelButton();
      accept.addEventListener('click', () => install(source, { ...query, accept_grants: err.digest }));
      fill(
        review,
        h(
          'section',
          { class: 'notice warn review', id: 'grant-review', 'aria-labelledby': 'grant-review-h' },
          h('h3', { id: 'grant-review-h' }, 'Review: this version asks for more'),
          h('p', {}, 'Compared with the installed version, it may also:'),
          grantsList(err.details.map((d) => d.problem)),
          h('p', { class: 'small' }, 'Bundle ', shortDigest(err.digest), '. Accept only if you expected these. ', h('span', { class: 'muted' }, err.message)),
          h('p', { class: 'actions' }, accept, ' ', cancel),
        ),
      );
      return;
    }
    if (err.code === 'untrusted-bundle') {
      const list = bundles.list();
      const allow = list && list.allow_untrusted && err.digest
        ? h('button', { type: 'button', class: 'button danger', id: 'allow-untrusted' }, 'Install this bundle anyway')
        : null;
      // The refusal lists what the bundle may do: that is the review.
      if (allow) allow.addEventListener('click', () => install(source, { ...query, allow_untrusted: err.digest }));
      const grants = err.details.filter((d) => d.field === 'grants').map((d) => d.problem);
      fill(
        review,
        h(
          'section',
          { class: 'notice error review', id: 'untrusted-review', role: 'alert', 'aria-labelledby': 'untrusted-h' },
          h('h3', { id: 'untrusted-h' }, 'Not signed by a publisher this server trusts'),
          h('p', {}, err.message),
          h('p', {}, 'A bundle runs code on this server, so it is refused unless one of the trusted keys signed it. To install it: add its publisher\'s public key to the server\'s trusted-keys directory and restart the server',
            err.digest ? [', or, on the server\'s host, run ', h('code', {}, `proximity recipe install FILE --allow-untrusted=${err.digest}`)] : '',
            '.'),
          grants.length ? [h('p', {}, 'If installed, it may:'), grantsList(grants)] : null,
          allow ? [h('p', {}, 'This server lets you allow this one bundle by its digest, if you know and trust where it comes from:'), h('p', {}, allow)] : null,
        ),
      );
      return;
    }
    fill(review, notice('error', h('strong', {}, 'Not installed: '), err.message));
  };

  const fileForm = h(
    'form',
    { id: 'bundle-upload-form' },
    h('div', { class: 'field' }, h('label', { for: 'bundle-file' }, 'Bundle file (.prox)'), fileInput),
    h('p', {}, uploadButton),
  );
  fileForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const file = fileInput.files && fileInput.files[0];
    if (!file) {
      fill(review, notice('error', 'Choose a bundle file first.'));
      fileInput.focus();
      return;
    }
    attempt({ file });
  });
  const urlForm = h(
    'form',
    { id: 'bundle-url-form' },
    h('div', { class: 'field' }, h('label', { for: 'bundle-url' }, 'Or a URL the server fetches it from'), urlInput),
    h('p', {}, urlButton),
  );
  urlForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!urlInput.value.trim()) {
      fill(review, notice('error', 'Enter the bundle\'s URL first.'));
      urlInput.focus();
      return;
    }
    attempt({ url: urlInput.value.trim() });
  });
  return h(
    'section',
    { 'aria-labelledby': 'install-h' },
    h('h2', { id: 'install-h' }, 'Install a bundle'),
    h('p', { class: 'muted' }, 'The server checks the signature and every file and installs nothing yet: you see what the recipe may do (and what a new version may do beyond the installed one), then install it or not.'),
    h('div', { class: 'two' }, fileForm, urlForm),
    review,
  );
}

export async function settingsView({ main, signal }) {
  const bundles = await bundlesSection(signal);
  // Left for another view while loading: that view owns `main` now.
  if (signal && signal.aborted) return;
  document.addEventListener('proximity:token', () => bundles.reload(), { signal });
  fill(main, h('h1', {}, 'Settings'), tokenSection(), bundles.section, installSection(bundles));
}
