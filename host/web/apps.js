// Apps: every installed app with its state and address, and one app's page
// with start / stop / restart / upgrade / uninstall (each confirmed first),
// its logs and its generated credentials.

import { get, isAuthError, post, request } from './api.js';
import { announce, confirmAction, externalLink, fill, h, notice, shortDigest, showSecrets } from './dom.js';

function needToken(main, what) {
  fill(main, h('h1', {}, 'Apps'), notice('error', `${what} needs an API token: `, h('a', { href: '#/settings' }, 'enter it in Settings'), '.'));
}

function stateBadge(state) {
  return h('span', { class: `state ${state}`, dataset: { state } }, state);
}

export async function appsView({ main, signal }) {
  fill(main, h('h1', {}, 'Apps'), h('p', { class: 'muted' }, 'Loading…'));
  let apps;
  try {
    ({ apps } = await get('/apps', { signal }));
  } catch (err) {
    if (isAuthError(err)) return needToken(main, 'Listing apps');
    throw err;
  }
  if (!apps.length) {
    fill(main, h('h1', {}, 'Apps'), h('p', { id: 'apps-empty' }, 'No app is installed yet. ', h('a', { href: '#/' }, 'Pick one in the catalog'), '.'));
    return;
  }
  fill(
    main,
    h('h1', {}, 'Apps'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { id: 'apps-table', class: 'stack' },
        h('caption', { class: 'visually-hidden' }, 'Installed apps'),
        h('thead', {}, h('tr', {}, ['App', 'State', 'Address', 'Recipe', 'Node'].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          apps.map((app) =>
            h(
              'tr',
              { dataset: { app: app.id } },
              h('th', { scope: 'row', 'data-label': 'App' }, h('a', { href: `#/apps/${encodeURIComponent(app.id)}` }, app.id)),
              h('td', { 'data-label': 'State' }, stateBadge(app.state)),
              h('td', { 'data-label': 'Address' }, app.url ? externalLink(app.url) : app.address || '—'),
              h('td', { 'data-label': 'Recipe' }, `${app.recipe} ${app.version}`),
              h('td', { 'data-label': 'Node' }, app.node || '—'),
            ),
          ),
        ),
      ),
    ),
  );
}

export async function appView({ main, signal }, id) {
  fill(main, h('h1', {}, id), h('p', { class: 'muted' }, 'Loading…'));
  let app;
  try {
    app = await get(`/apps/${encodeURIComponent(id)}`, { signal });
  } catch (err) {
    if (isAuthError(err)) return needToken(main, 'Managing an app');
    throw err;
  }
  let catalogVersion = null;
  try {
    catalogVersion = (await get(`/recipes/${encodeURIComponent(app.recipe)}`, { signal })).version;
  } catch {
    catalogVersion = null;
  }
  const message = h('div', { id: 'app-message' });
  const logs = h('div', { id: 'app-logs' });
  const secretsBox = h('div', { id: 'app-secrets' });
  const facts = h('dl', { class: 'facts', id: 'app-facts' });
  const state = h('p', { id: 'app-state' });
  const path = `/apps/${encodeURIComponent(id)}`;

  const showFacts = (a) => {
    fill(state, 'State: ', stateBadge(a.state));
    fill(
      facts,
      h('dt', {}, 'Address'), h('dd', {}, a.url ? externalLink(a.url) : a.address || '—'),
      h('dt', {}, 'Recipe'), h('dd', {}, h('a', { href: `#/recipes/${encodeURIComponent(a.recipe)}` }, a.recipe), ` ${a.version}`, catalogVersion && catalogVersion !== a.version ? ` (the catalog has ${catalogVersion})` : ''),
      h('dt', {}, 'Recipe digest'), h('dd', {}, shortDigest(a.digest)),
      a.ports.length ? [h('dt', {}, 'Ports'), h('dd', {}, a.ports.join(', '))] : null,
      a.node ? [h('dt', {}, 'Node'), h('dd', {}, a.node)] : null,
      h('dt', {}, 'Containers'), h('dd', {}, a.containers.join(', ') || '—'),
      Object.keys(a.params).length ? [h('dt', {}, 'Parameters'), h('dd', {}, h('ul', { class: 'plain' }, Object.entries(a.params).map(([k, v]) => h('li', {}, h('code', {}, k), ' = ', v))))] : null,
      h('dt', {}, 'Last deployment'), h('dd', {}, h('a', { href: `#/jobs/${encodeURIComponent(a.deployment_id)}` }, a.deployment_id)),
    );
  };

  // [label, dialog title, dialog text, action, kind, danger]: `action` is
  // POST /apps/ID/ACTION (uninstall: DELETE /apps/ID); kind 'app' answers the
  // app (start/stop/restart), 'job' a job to follow (upgrade/uninstall).
  const actions = [
    ['Start', `Start ${id}?`, 'Its containers are started.', 'start', 'app', false],
    ['Stop', `Stop ${id}?`, 'Its containers are stopped; the app is unreachable until started again.', 'stop', 'app', false],
    ['Restart', `Restart ${id}?`, 'Its containers are stopped and started again.', 'restart', 'app', false],
    ['Upgrade', `Upgrade ${id}?`, `The recipe's upgrade runs, moving the app to the catalog's version${catalogVersion ? ` (${catalogVersion})` : ''}.`, 'upgrade', 'job', false],
    ['Uninstall', `Uninstall ${id}?`, 'The recipe removes the app and its containers are destroyed, with their data. This cannot be undone.', 'uninstall', 'job', true],
  ];
  const buttons = actions.map(([label, title, body, action, kind, danger]) => {
    const button = h('button', { type: 'button', class: danger ? 'button danger' : 'button secondary', dataset: { action } }, label);
    button.addEventListener('click', async () => {
      const ok = await confirmAction({ title, body, confirm: label, danger });
      if (!ok) return;
      fill(message);
      for (const b of buttons) b.disabled = true;
      try {
        if (action === 'uninstall') {
          const job = await request(path, { method: 'DELETE' });
          location.hash = `#/jobs/${job.id}`;
          return;
        }
        const answer = await post(`${path}/${action}`, kind === 'job' ? {} : undefined);
        if (kind === 'job') {
          location.hash = `#/jobs/${answer.id}`;
          return;
        }
        app = answer;
        showFacts(app);
        fill(message, notice('ok', `${label}: done. The app is ${app.state}.`));
        announce(`${id} is ${app.state}.`);
      } catch (err) {
        fill(message, notice('error', `${label} failed: ${err.message}`));
      } finally {
        for (const b of buttons) b.disabled = false;
      }
    });
    return button;
  });

  const logsButton = h('button', { type: 'button', class: 'button secondary', id: 'app-load-logs' }, 'Show logs');
  logsButton.addEventListener('click', async () => {
    fill(logs, h('p', { class: 'muted' }, 'Reading the logs…'));
    try {
      const answer = await get(`${path}/logs`);
      const health = answer.health;
      fill(
        logs,
        health ? h('p', {}, 'Health: ', h('strong', {}, health.healthy === false ? 'unhealthy' : 'healthy'), health.error ? ` (${health.error})` : '') : null,
        answer.lines.length ? h('pre', { class: 'log', tabindex: '0', 'aria-label': 'Log lines' }, answer.lines.join('\n')) : h('p', {}, 'No log lines.'),
      );
      logsButton.textContent = 'Refresh logs';
    } catch (err) {
      fill(logs, notice('error', err.message));
    }
  });
  const secretsButton = h('button', { type: 'button', class: 'button secondary', id: 'app-show-secrets' }, 'Show credentials');
  secretsButton.addEventListener('click', () => showSecrets(id, secretsBox, secretsButton));

  showFacts(app);
  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/apps' }, 'Apps'), ' / ', id),
    h('h1', {}, id),
    state,
    h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' }, buttons),
    message,
    facts,
    app.secrets.length
      ? h('section', { 'aria-labelledby': 'secrets-h' }, h('h2', { id: 'secrets-h' }, 'Credentials'), h('p', {}, `Generated secrets: ${app.secrets.join(', ')}.`), secretsButton, secretsBox)
      : null,
    h('section', { 'aria-labelledby': 'logs-h' }, h('h2', { id: 'logs-h' }, 'Logs'), logsButton, logs),
  );
}
