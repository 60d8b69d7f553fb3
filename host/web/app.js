// The page's shell: hash routes to views, the navigation, focus on each view
// change, and the server's status in the header.
//
//   #/                      catalog          #/apps          apps
//   #/recipes/ID            a recipe         #/apps/ID       one app
//   #/recipes/ID/deploy     the deploy form  #/settings      token, bundles
//   #/jobs/ID               a job's progress

import { serverHealth } from './api.js';
import { fill, h } from './dom.js';
import { catalogView } from './catalog.js';
import { recipeView, deployView } from './recipe.js';
import { jobView } from './job.js';
import { appsView, appView } from './apps.js';
import { settingsView } from './settings.js';

const routes = [
  [/^\/?$/, 'catalog', () => catalogView],
  [/^\/recipes\/([a-z0-9-]+)$/, 'catalog', (m) => (ctx) => recipeView(ctx, m[1])],
  [/^\/recipes\/([a-z0-9-]+)\/deploy$/, 'catalog', (m) => (ctx) => deployView(ctx, m[1])],
  [/^\/jobs\/([A-Za-z0-9_-]+)$/, 'apps', (m) => (ctx) => jobView(ctx, m[1])],
  [/^\/apps$/, 'apps', () => appsView],
  [/^\/apps\/([A-Za-z0-9_.-]+)$/, 'apps', (m) => (ctx) => appView(ctx, m[1])],
  [/^\/settings$/, 'settings', () => settingsView],
];

let current = null;
/** After the first view, each new view's heading takes the focus. */
let navigated = false;

async function render() {
  const hash = location.hash.replace(/^#/, '');
  const [rawPath, query = ''] = hash.split('?');
  let path = rawPath;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    path = rawPath;
  }
  const params = new URLSearchParams(query);
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const main = document.getElementById('main');
  let view = null;
  let section = null;
  for (const [pattern, nav, make] of routes) {
    const match = path.match(pattern);
    if (match) {
      view = make(match);
      section = nav;
      break;
    }
  }
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main.setAttribute('aria-busy', 'true');
  const ctx = { signal: controller.signal, params, main };
  try {
    if (!view) {
      fill(main, h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Back to the catalog')));
    } else {
      await view(ctx);
    }
  } catch (err) {
    if (err.name === 'AbortError') return;
    fill(main, h('h1', { tabindex: '-1' }, 'Something went wrong'), h('p', { role: 'alert' }, err.message));
  } finally {
    if (current === controller) main.removeAttribute('aria-busy');
  }
  if (controller.signal.aborted) return;
  const heading = main.querySelector('h1');
  if (heading) {
    document.title = `${heading.textContent} · Proximity`;
    if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
    // Keyboard and screen reader users land on the new view's heading.
    if (navigated) heading.focus({ preventScroll: false });
  }
  navigated = true;
  // Which view is on screen (the browser tests wait for it).
  document.documentElement.dataset.route = hash;
}

async function showServer() {
  const status = document.getElementById('server-status');
  const info = await serverHealth();
  if (info) {
    fill(status, h('span', { class: 'dot ok', 'aria-hidden': 'true' }), `Backend: ${info.backend} · v${info.version}`);
  } else {
    fill(status, h('span', { class: 'dot bad', 'aria-hidden': 'true' }), 'Server not answering');
  }
}

window.addEventListener('hashchange', render);
window.addEventListener('DOMContentLoaded', () => {
  document.getElementById('skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    document.getElementById('main').focus();
  });
  showServer();
  render();
});
