// Browser scenarios for the page `proximity serve` serves, run one at a time
// by host/tests/web.rs: `node run.mjs SCENARIO`. Playwright (playwright-core,
// which downloads no browser) drives Debian's Chromium, headless, with a
// fresh profile and without background network calls. Every view is saved
// as a screenshot in $WEB_SCREENSHOTS. Exits non-zero, saying what failed.
//
// Environment: PROXIMITY_URL, PROXIMITY_TOKEN, PROXIMITY_CHROMIUM,
// WEB_SCREENSHOTS, BUNDLE_GROWN, BUNDLE_UNTRUSTED, BUNDLE_FRESH (and LXC_APP_ID
// for `lxc`).

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = process.env;
const base = env.PROXIMITY_URL;
const token = env.PROXIMITY_TOKEN;
const shots = env.WEB_SCREENSHOTS || '.';
const executablePath = env.PROXIMITY_CHROMIUM || '/usr/bin/chromium';
// Generous: a loaded CI machine is slow, and nothing here measures speed.
const WAIT = 90_000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function log(...words) {
  console.log(`[${scenarioName}]`, ...words);
}

/** A fresh browser profile and page; `withToken` puts the API token in localStorage first. */
async function browse(fn, { withToken = true, viewport = { width: 1280, height: 900 } } = {}) {
  // Here, not at the top: the `sse` scenario needs node only, and runs
  // where playwright-core is not installed.
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'proximity-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    timeout: WAIT,
  });
  context.setDefaultTimeout(WAIT);
  // Only this server: anything else the page asks for is refused (and reported).
  const strayRequests = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(base) || url.startsWith('data:')) return route.continue();
    // The real-container scenario opens the app's own page.
    if (scenarioName === 'lxc' && url.startsWith('http://')) return route.continue();
    strayRequests.push(url);
    return route.abort();
  });
  if (withToken) {
    await context.addInitScript((t) => {
      if (!sessionStorage.getItem('token-set')) {
        localStorage.setItem('proximity.token', t);
        sessionStorage.setItem('token-set', '1');
      }
    }, token);
  }
  const page = context.pages()[0] || (await context.newPage());
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err));
  page.on('console', (message) => {
    if (message.type() === 'error') log('console error:', message.text());
  });
  try {
    await fn(page, context);
    assert.deepEqual(pageErrors.map(String), [], 'the page threw');
    assert.deepEqual(strayRequests, [], 'the page asked for something outside its server');
  } catch (err) {
    await page.screenshot({ path: join(shots, `FAILED-${scenarioName}.png`), fullPage: true }).catch(() => {});
    throw err;
  } finally {
    await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
}

async function shot(page, name) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  log('screenshot', path);
}

/** Waits until the view at `route` (the address after #) is on screen. */
async function shown(page, route) {
  await page.waitForFunction((r) => document.documentElement.dataset.route === r, route);
}

/** Opens a view by its address and waits until it is on screen. */
async function open(page, hash) {
  await page.goto(`${base}/${hash}`);
  await page.waitForFunction((route) => document.documentElement.dataset.route === route, hash.replace(/^#/, ''));
}

/** Every form control has a label a screen reader reads. */
async function checkLabels(page) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('main input, main select, main textarea')]
      .filter((el) => el.type !== 'hidden')
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      .map((el) => el.outerHTML),
  );
  assert.deepEqual(unlabelled, [], 'form controls without a label');
}

async function noSidewaysScroll(page) {
  const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= width, `the page is ${scroll}px wide in a ${width}px window`);
}

const cards = (page) => page.locator('#catalog-grid > li');

const scenarios = {
  async catalog() {
    await browse(async (page) => {
      await open(page, '');
      await page.getByRole('heading', { level: 1, name: 'Catalog' }).waitFor();
      await cards(page).first().waitFor();
      const names = await page.locator('#catalog-grid h2').allTextContents();
      for (const name of ['nginx', 'WordPress', 'Redis', 'Failing nginx']) assert.ok(names.includes(name), `${name} in ${names}`);
      assert.equal(await cards(page).count(), 4);
      // Icons load from the API (SVG served as an image). Lazily: wait for
      // this one to finish rather than read it once.
      await page.waitForFunction(() => {
        const img = document.querySelector('li[data-recipe="nginx"] img.icon');
        return img !== null && img.complete && img.naturalWidth > 0;
      });
      await checkLabels(page);
      await shot(page, 'catalog');

      // Search, by keyboard: the search box is reachable and filters as one types.
      await page.getByLabel('Search apps').focus();
      await page.keyboard.type('wordpress');
      await page.waitForFunction(() => document.querySelectorAll('#catalog-grid > li').length === 1);
      assert.equal(await page.locator('#catalog-grid h2').textContent(), 'WordPress');
      assert.match(await page.locator('#catalog-count').textContent(), /1 of 4 apps/);
      await shot(page, 'catalog-search');
      await page.getByLabel('Search apps').fill('no such thing anywhere');
      await page.locator('#catalog-count', { hasText: 'No app matches.' }).waitFor();
      await page.getByLabel('Search apps').fill('');
      await page.waitForFunction(() => document.querySelectorAll('#catalog-grid > li').length === 4);

      // Category filter.
      const categories = await page.locator('#catalog-category option').allTextContents();
      assert.deepEqual(categories, ['All categories', 'cms', 'database', 'testing', 'web']);
      await page.getByLabel('Category').selectOption('web');
      await page.waitForFunction(() => document.querySelectorAll('#catalog-grid > li').length === 1);
      assert.equal(await page.locator('#catalog-grid h2').textContent(), 'nginx');
      assert.ok(page.url().includes('category=web'), 'the filter is kept in the address');
      await shot(page, 'catalog-filtered');
      // The filter survives a reload.
      await page.reload();
      await page.waitForFunction(() => document.querySelectorAll('#catalog-grid > li').length === 1);
      assert.equal(await page.getByLabel('Category').inputValue(), 'web');

      // Keyboard: Tab from the filter to the card's link, Enter opens it.
      await page.getByLabel('Category').focus();
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement.textContent), 'nginx');
      await page.keyboard.press('Enter');
      await shown(page, '/recipes/nginx');
      assert.equal(await page.evaluate(() => document.activeElement.tagName), 'H1', 'focus moves to the new view');
    });
  },

  async form() {
    await browse(async (page) => {
      await open(page, '');
      await page.getByRole('link', { name: 'WordPress' }).click();
      await shown(page, '/recipes/wordpress');
      const text = await page.locator('main').textContent();
      assert.match(text, /Version 0\.1\.0/);
      assert.match(text, /Docker inside an unprivileged Alpine/, 'the notes');
      assert.ok((await page.locator('.grants li').count()) >= 3, 'the grants in words');
      assert.equal(await page.getByRole('link', { name: 'https://wordpress.org' }).getAttribute('rel'), 'noopener noreferrer');
      assert.match(text, /80\/tcp/, 'the ports');
      await shot(page, 'recipe-detail');

      await page.getByRole('link', { name: 'Deploy WordPress…' }).click();
      await shown(page, '/recipes/wordpress/deploy');
      await checkLabels(page);
      // Typed fields with their defaults.
      const port = page.getByLabel('http-port');
      assert.equal(await port.getAttribute('type'), 'number');
      assert.equal(await port.inputValue(), '80');
      const secret = page.getByLabel('db-password');
      assert.equal(await secret.getAttribute('type'), 'password');
      assert.equal(await secret.inputValue(), '');
      await page.locator('[data-param="db-password"]').getByRole('button', { name: 'Generate' }).click();
      assert.equal((await secret.inputValue()).length, 32);
      await page.locator('[data-param="db-password"]').getByRole('button', { name: 'Show' }).click();
      assert.equal(await secret.getAttribute('type'), 'text');
      assert.equal(await page.locator('#deploy-backend').textContent(), 'sim');
      assert.ok(await page.getByLabel('Node').isVisible());

      // A bad value: the server's 422 lands next to its field.
      await port.fill('70000');
      await page.getByRole('button', { name: 'Deploy', exact: true }).click();
      const error = page.locator('#param-http-port-error');
      await error.waitFor({ state: 'visible' });
      assert.match(await error.textContent(), /65535/);
      assert.equal(await port.getAttribute('aria-invalid'), 'true');
      assert.match(await port.getAttribute('aria-describedby'), /param-http-port-error/);
      assert.equal(await page.evaluate(() => document.activeElement.id), 'param-http-port', 'focus goes to the bad field');
      await page.locator('#deploy-problems [role="alert"]').waitFor();
      await shot(page, 'deploy-form-error');

      // Not a number: the browser reports an empty value, so the page stops
      // the submit (else the server would use the default) and says why.
      await port.fill('');
      await port.pressSequentially('8-80');
      assert.equal(await port.evaluate((el) => el.validity.badInput), true, 'a non-number typed');
      await page.getByRole('button', { name: 'Deploy', exact: true }).click();
      await page.locator('#param-http-port-error', { hasText: 'Not a number' }).waitFor();
      assert.equal(await port.getAttribute('aria-invalid'), 'true');
      assert.match(await port.getAttribute('aria-describedby'), /param-http-port-error/);
      await page.locator('#deploy-problems', { hasText: 'Not sent' }).waitFor();
      assert.match(page.url(), /\/deploy$/, 'nothing was submitted');

      // Resources past the grant's bound: the error sits by the resource field.
      await port.fill('8080');
      await page.locator('details.resources summary').click();
      const cores = page.getByLabel('CPU cores');
      assert.equal(await cores.getAttribute('max'), '4', 'the lxc grant bounds the cores');
      await cores.fill('99');
      await page.getByRole('button', { name: 'Deploy', exact: true }).click();
      await page.locator('#deploy-cores-error').waitFor({ state: 'visible' });
      assert.equal(await page.locator('#param-http-port-error').isVisible(), false, 'the fixed field is clear');
      await shot(page, 'deploy-form-resource-error');
      await cores.fill('2');

      // Fixed, as a dry run: the plan is shown, nothing is created.
      const generated = await secret.inputValue();
      await page.getByLabel(/Dry run/).check();
      await page.getByRole('button', { name: 'Show the plan' }).click();
      await page.getByRole('heading', { level: 1, name: 'Dry run of wordpress' }).waitFor();
      await page.locator('#job-status[data-state="succeeded"]').waitFor();
      await page.locator('#job-plan').waitFor();
      const plan = await page.locator('#job-plan').textContent();
      assert.match(plan, /Create container/);
      assert.match(plan, /compose/);
      assert.ok(!plan.includes(generated), 'no secret in the plan');
      await shot(page, 'dry-run-plan');

      // Booleans are checkboxes, enums are selects; the request carries their types.
      await open(page, '#/recipes/failing-nginx/deploy');
      const verbose = page.getByLabel('verbose');
      assert.equal(await verbose.getAttribute('type'), 'checkbox');
      assert.equal(await verbose.isChecked(), false);
      const flavour = page.getByLabel('flavour');
      assert.deepEqual(await flavour.locator('option').allTextContents(), ['plain', 'fancy']);
      assert.equal(await flavour.inputValue(), 'plain');
      await verbose.check();
      await flavour.selectOption('fancy');
      const sent = page.waitForRequest((r) => r.url().endsWith('/api/v1/deployments') && r.method() === 'POST');
      await page.getByRole('button', { name: 'Deploy', exact: true }).click();
      const body = JSON.parse((await sent).postData());
      assert.deepEqual(body.params, { greeting: 'Hello from Proximity', verbose: true, flavour: 'fancy' });
      assert.equal(body.dry_run, false);
      await page.locator('#job-failure').waitFor();
    });
  },

  async deploy() {
    await browse(async (page) => {
      await open(page, '#/recipes/nginx/deploy');
      await page.getByLabel('greeting').fill('Hello from the browser');
      await page.getByLabel('App name').fill('web-nginx');
      await page.getByRole('button', { name: 'Deploy', exact: true }).click();
      await page.getByRole('heading', { level: 1, name: 'Deploying nginx' }).waitFor();
      await page.locator('#job-status[data-state="succeeded"]').waitFor();
      const steps = await page.locator('#job-steps > li:not(.preparing) .step-name').allTextContents();
      // The recipe's own steps (its author may add some), then the final check.
      assert.ok(steps.length >= 3, `steps: ${steps}`);
      assert.equal(steps[0], 'Creating container');
      assert.ok(steps.includes('Installing nginx'), `steps: ${steps}`);
      assert.equal(steps.at(-1), 'Done');
      assert.equal(await page.locator('#job-steps > li:not([data-state="done"])').count(), 0, 'every step is checked');
      // (nginx logs nothing on a deploy: the log disclosure is checked in
      // `failure`, whose cleanup is logged.)
      const link = page.locator('#job-success a[href^="http"]');
      assert.match(await link.getAttribute('href'), /^http:\/\/[\d.]+\/$/);
      await shot(page, 'progress-done');

      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Apps' }).click();
      await shown(page, '/apps');
      const row = page.locator('#apps-table tr[data-app="web-nginx"]');
      await row.waitFor();
      assert.equal(await row.locator('[data-state]').textContent(), 'running');
      assert.match(await row.textContent(), /nginx 0\.1\.0/);
      await shot(page, 'apps');

      await row.getByRole('link', { name: 'web-nginx' }).click();
      await shown(page, '/apps/web-nginx');
      await page.getByRole('button', { name: 'Show logs' }).click();
      await page.locator('#app-logs pre').waitFor();

      // Stop, confirmed in a dialog; Escape backs out of one.
      await page.getByRole('button', { name: 'Stop', exact: true }).click();
      const dialog = page.getByRole('dialog', { name: 'Stop web-nginx?' });
      await dialog.waitFor();
      assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel', 'the safe choice has focus');
      await shot(page, 'confirm-stop');
      await dialog.getByRole('button', { name: 'Stop' }).click();
      await page.locator('#app-state [data-state="stopped"]').waitFor();
      await shot(page, 'app-stopped');

      await page.getByRole('button', { name: 'Uninstall' }).click();
      await page.getByRole('dialog', { name: 'Uninstall web-nginx?' }).waitFor();
      await page.keyboard.press('Escape');
      await page.getByRole('dialog').waitFor({ state: 'hidden' });
      assert.equal(await page.locator('#app-state [data-state]').textContent(), 'stopped', 'nothing happened');
      await page.getByRole('button', { name: 'Uninstall' }).click();
      await page.getByRole('dialog', { name: 'Uninstall web-nginx?' }).getByRole('button', { name: 'Uninstall' }).click();
      await page.getByRole('heading', { level: 1, name: 'Uninstalling web-nginx' }).waitFor();
      await page.locator('#job-status[data-state="succeeded"]').waitFor();
      await page.locator('#job-outcome', { hasText: 'web-nginx was uninstalled' }).waitFor();
      await shot(page, 'uninstalled');
      await page.getByRole('link', { name: 'Back to the apps' }).click();
      await page.locator('#apps-empty').waitFor();

      // An app with a generated password: the success panel says where to read it.
      await open(page, '#/recipes/redis/deploy');
      await page.getByLabel('App name').fill('web-redis');
      await page.getByRole('button', { name: 'Deploy', exact: true }).click();
      await page.locator('#job-status[data-state="succeeded"]').waitFor();
      const success = page.locator('#job-success');
      assert.match(await success.textContent(), /Generated credentials \(password\)/);
      await success.getByRole('button', { name: 'Show credentials' }).click();
      const value = await page.locator('#job-secrets .secret-value').textContent();
      assert.ok(value.length >= 16, `a generated password: ${value.length} characters`);
      await shot(page, 'progress-credentials');
    });
  },

  async failure() {
    await browse(async (page) => {
      await open(page, '#/recipes/failing-nginx/deploy');
      await page.getByRole('button', { name: 'Deploy', exact: true }).click();
      const panel = page.locator('#job-failure');
      await panel.waitFor();
      assert.equal(await panel.getAttribute('role'), 'alert');
      // The simulated `nginx -t` fails: the step that ran it is the failed one.
      const failedStep = await page.locator('#job-steps > li[data-state="failed"] .step-name').textContent();
      assert.equal(await page.locator('#failure-step').textContent(), failedStep);
      assert.match(await page.locator('#failure-error').textContent(), /gretting/);
      assert.match(await page.locator('#failure-cleanup').textContent(), /Destroyed container/);
      assert.ok(await page.locator('#job-steps > li:not(.preparing)[data-state="done"]').count() >= 1, 'the steps before it are done');
      assert.equal(await page.locator('#job-steps > li[data-state="active"]').count(), 0, 'no step is left spinning');
      assert.equal(await page.locator('#job-status').getAttribute('data-state'), 'failed');
      // Log lines sit behind each step's disclosure: the cleanup's, at least.
      const logs = page.locator('#job-steps details.step-log:not([hidden])');
      assert.ok((await logs.count()) >= 1, 'at least one step has log lines');
      const withLog = logs.last();
      await withLog.locator('summary').click();
      assert.ok(await withLog.locator('.log-lines li').first().isVisible());
      assert.match(await withLog.locator('.log-lines').textContent(), /destroyed container/);
      await shot(page, 'deploy-failed');
    });
  },

  async settings() {
    await browse(
      async (page) => {
        await open(page, '#/apps');
        await page.locator('main [role="alert"]', { hasText: 'needs an API token' }).waitFor();
        await page.getByRole('link', { name: 'enter it in Settings' }).click();
        await page.getByRole('heading', { level: 1, name: 'Settings' }).waitFor();
        await page.locator('#bundles', { hasText: 'Enter a token' }).waitFor();
        await checkLabels(page);

        await page.getByRole('textbox', { name: 'API token' }).fill('prx_not-a-real-token');
        await page.getByRole('button', { name: 'Save' }).click();
        await page.locator('#token-result', { hasText: 'refuses' }).waitFor();
        await page.getByRole('textbox', { name: 'API token' }).fill(token);
        await page.getByRole('button', { name: 'Save' }).click();
        await page.locator('#token-result', { hasText: 'accepts this token' }).waitFor();
        // The bundle list appears with the token: recipes and their publisher.
        const table = page.locator('#bundles-table');
        await table.waitFor();
        for (const id of ['nginx', 'redis', 'wordpress', 'failing-nginx']) {
          assert.match(await table.locator(`tr[data-bundle="${id}"]`).textContent(), /publisher/);
        }
        assert.match(await page.locator('#trusted-keys').textContent(), /publisher \(key [0-9a-f]{16}\)/);
        await shot(page, 'settings');

        // Kept in this browser: a reload still has it, and the apps list opens.
        await page.reload();
        assert.equal(await page.getByRole('textbox', { name: 'API token' }).inputValue(), token);
        await open(page, '#/apps');
        await page.locator('#apps-empty').waitFor();
        // Forgotten: asked for again.
        await open(page, '#/settings');
        await page.getByRole('button', { name: 'Forget' }).click();
        await page.locator('#token-result', { hasText: 'removed' }).waitFor();
        assert.equal(await page.evaluate(() => localStorage.getItem('proximity.token')), null);
      },
      { withToken: false },
    );
  },

  async bundles() {
    // A redis app on 0.1.0, to upgrade once 0.2.0 is installed.
    const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
    const accepted = await (await fetch(`${base}/api/v1/deployments`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ recipe: 'redis', app_id: 'web-redis-up' }),
    })).json();
    const events = await (await fetch(`${base}/api/v1/deployments/${accepted.id}/events`, { headers })).text();
    assert.match(events, /"state":"succeeded"/, 'redis 0.1.0 deployed');

    await browse(async (page) => {
      await open(page, '#/settings');
      await page.locator('#bundles-table tr[data-bundle="redis"]').waitFor();

      // A new recipe: reviewed first (what it may do, who signed it), nothing
      // installed until confirmed; cancelled, then installed.
      await page.getByLabel('Bundle file (.prox)').setInputFiles(env.BUNDLE_FRESH);
      await page.getByRole('button', { name: 'Upload and review' }).click();
      const first = page.locator('#install-review');
      await first.waitFor();
      const firstWords = await first.textContent();
      assert.match(firstWords, /hello-nginx 0\.1\.0, a new recipe/);
      assert.match(firstWords, /creates containers/);
      assert.match(firstWords, /Signed by publisher/);
      assert.equal(await page.locator('#bundles-table tr[data-bundle="hello-nginx"]').count(), 0, 'a review installs nothing');
      await shot(page, 'bundle-review');
      await first.getByRole('button', { name: 'Cancel' }).click();
      await page.locator('#bundle-review', { hasText: 'Not installed.' }).waitFor();
      assert.equal(await page.locator('#bundles-table tr[data-bundle="hello-nginx"]').count(), 0);
      await page.getByRole('button', { name: 'Upload and review' }).click();
      await page.locator('#install-review').getByRole('button', { name: 'Install', exact: true }).click();
      await page.locator('#install-result', { hasText: 'hello-nginx 0.1.0 installed.' }).waitFor();
      await page.locator('#bundles-table tr[data-bundle="hello-nginx"]').waitFor();

      // A new version asking for more: the grants that grew, then confirmed.
      await page.getByLabel('Bundle file (.prox)').setInputFiles(env.BUNDLE_GROWN);
      await page.getByRole('button', { name: 'Upload and review' }).click();
      const review = page.locator('#grant-review');
      await review.waitFor();
      assert.match(await review.locator('.grants').textContent(), /max-cores 2 -> 6/);
      assert.equal(await page.locator('#bundles-table tr[data-bundle="redis"] td[data-label="Version"]').textContent(), '0.1.0');
      await shot(page, 'bundle-grant-review');
      await page.getByRole('button', { name: 'Accept the new grants and install' }).click();
      await page.locator('#install-result', { hasText: 'redis 0.2.0 installed (replacing 0.1.0)' }).waitFor();
      await page.locator('#bundles-table tr[data-bundle="redis"] td[data-label="Version"]', { hasText: '0.2.0' }).waitFor();
      await shot(page, 'bundle-installed');

      // The app on 0.1.0 can now be upgraded from its page.
      await open(page, '#/apps/web-redis-up');
      assert.match(await page.locator('#app-facts').textContent(), /redis 0\.1\.0 \(the catalog has 0\.2\.0\)/);
      await page.getByRole('button', { name: 'Upgrade' }).click();
      await page.getByRole('dialog', { name: 'Upgrade web-redis-up?' }).getByRole('button', { name: 'Upgrade' }).click();
      await page.getByRole('heading', { level: 1, name: 'Upgrading web-redis-up' }).waitFor();
      await page.locator('#job-status[data-state="succeeded"]').waitFor();
      await page.locator('#job-success', { hasText: 'web-redis-up was upgraded' }).waitFor();
      await open(page, '#/apps');
      assert.match(await page.locator('#apps-table tr[data-app="web-redis-up"]').textContent(), /redis 0\.2\.0/);
      await open(page, '#/settings');

      // Signed by a key the server does not trust, fetched by the server from
      // a URL: refused, with what to do.
      await page.getByLabel('Or a URL the server fetches it from').fill(env.BUNDLE_URL);
      await page.getByRole('button', { name: 'Fetch and review' }).click();
      const untrusted = page.locator('#untrusted-review');
      await untrusted.waitFor();
      const words = await untrusted.textContent();
      assert.match(words, /trusted-keys directory/);
      assert.match(words, /--allow-untrusted=[0-9a-f]{64}/);
      assert.match(words, /If installed, it may:\s*creates containers/);
      assert.equal(await page.locator('#allow-untrusted').count(), 0, 'this server takes no allow_untrusted over the API');
      assert.equal(await page.locator('#bundles-table tr[data-bundle="nginx"] td[data-label="Version"]').textContent(), '0.1.0');
      await shot(page, 'bundle-untrusted');
    });
  },

  async 'bundles-allow'() {
    await browse(async (page) => {
      await open(page, '#/settings');
      await page.locator('#bundles-table tr[data-bundle="nginx"]').waitFor();
      await page.getByLabel('Bundle file (.prox)').setInputFiles(env.BUNDLE_UNTRUSTED);
      await page.getByRole('button', { name: 'Upload and review' }).click();
      await page.locator('#untrusted-review').waitFor();
      // What it may do, in words, above the button that allows it.
      await page.locator('#untrusted-review .grants', { hasText: 'creates containers' }).waitFor();
      const allow = page.getByRole('button', { name: 'Install this bundle anyway' });
      await allow.waitFor();
      await shot(page, 'bundle-untrusted-allowable');
      await allow.click();
      await page.locator('#install-result', { hasText: 'nginx 0.3.0 installed (replacing 0.1.0)' }).waitFor();
      const row = page.locator('#bundles-table tr[data-bundle="nginx"]');
      await row.locator('td[data-label="Version"]', { hasText: '0.3.0' }).waitFor();
      assert.match(await row.locator('td[data-label="Publisher"]').textContent(), /no trusted signer/);
    });
  },

  async phone() {
    await browse(
      async (page) => {
        for (const [hash, name] of [
          ['', 'phone-catalog'],
          ['#/recipes/wordpress', 'phone-recipe'],
          ['#/recipes/wordpress/deploy', 'phone-deploy'],
          ['#/apps', 'phone-apps'],
          ['#/settings', 'phone-settings'],
        ]) {
          await open(page, hash);
          await page.locator('main h1').waitFor();
          await noSidewaysScroll(page);
          await shot(page, name);
        }
        // The navigation is reachable and large enough to tap.
        const box = await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Apps' }).boundingBox();
        assert.ok(box.height >= 44, `nav links are ${box.height}px tall`);
      },
      { viewport: { width: 375, height: 812 } },
    );
  },

  async lxc() {
    const appId = env.LXC_APP_ID;
    await browse(async (page) => {
      await open(page, '#/recipes/nginx/deploy');
      assert.equal(await page.locator('#deploy-backend').textContent(), 'lxc');
      await page.getByLabel('greeting').fill('Hello from a real container');
      await page.getByLabel('App name').fill(appId);
      await page.getByRole('button', { name: 'Deploy', exact: true }).click();
      // The first run builds the base image: minutes, not seconds.
      await page.locator('#job-status[data-state="succeeded"], #job-failure').first().waitFor({ timeout: 20 * 60_000 });
      if (await page.locator('#job-failure').count()) {
        await shot(page, 'lxc-failed');
        assert.fail(`the deploy failed: ${await page.locator('#job-failure').textContent()}`);
      }
      await shot(page, 'lxc-progress-done');
      const href = await page.locator('#job-success a[href^="http"]').getAttribute('href');
      log('the app answers at', href);
      await page.goto(href);
      assert.match(await page.locator('body').textContent(), /Hello from a real container/);
      await shot(page, 'lxc-app-page');
    });
  },

  async sse() {
    const { SseParser, followJob } = await import(new URL('../../host/web/sse.js', import.meta.url).href);
    // The parser: any split of the stream, any line ending, comments, ids.
    const stream = ': hello\r\nid: 1\r\nevent: step\r\ndata: {"a":1}\r\n\r\nid: 2\ndata: two\ndata: lines\n\n:keep-alive\n\nid: 3\revent: end\rdata: x\r\r';
    for (let size = 1; size <= stream.length; size++) {
      const seen = [];
      const parser = new SseParser((e) => seen.push(e));
      for (let i = 0; i < stream.length; i += size) parser.push(stream.slice(i, i + size));
      assert.deepEqual(seen, [
        { type: 'step', data: '{"a":1}', id: '1' },
        { type: 'message', data: 'two\nlines', id: '2' },
        { type: 'end', data: 'x', id: '3' },
      ], `chunks of ${size}`);
    }
    const bom = [];
    new SseParser((e) => bom.push(e)).push('\ufeffdata: first\n\n');
    assert.deepEqual(bom, [{ type: 'message', data: 'first', id: '' }]);
    log('parser: ok');

    // Against the server: a dry run's events, with the connection cut twice
    // mid-stream; the reader resumes with Last-Event-ID and sees each event once.
    const headers = { Authorization: `Bearer ${token}` };
    const accepted = await (await fetch(`${base}/api/v1/deployments`, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify({ recipe: 'nginx', dry_run: true }),
    })).json();
    const realFetch = globalThis.fetch;
    const sentIds = [];
    let cuts = 0;
    globalThis.fetch = async (url, options) => {
      sentIds.push(options.headers['Last-Event-ID'] || null);
      const response = await realFetch(url, options);
      if (cuts >= 2) return response;
      cuts += 1;
      // Pass on the first event only (cut inside the second), then fail.
      const reader = response.body.getReader();
      let text = '';
      const decoder = new TextDecoder();
      while (!text.includes('\n\n')) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      const first = text.slice(0, text.indexOf('\n\n') + 2);
      let sent = false;
      const body = new ReadableStream({
        pull(controller) {
          if (sent) {
            controller.error(new Error('connection reset'));
          } else {
            sent = true;
            controller.enqueue(new TextEncoder().encode(`${first}data: {"half`));
          }
        },
      });
      reader.cancel().catch(() => {});
      return new Response(body, { status: 200, headers: response.headers });
    };
    const events = [];
    const states = [];
    const end = await followJob(`${base}/api/v1/deployments/${accepted.id}/events`, {
      headers,
      onEvent: (e) => events.push(e),
      onState: (s) => states.push(s),
    });
    globalThis.fetch = realFetch;
    assert.equal(end.kind, 'end');
    assert.equal(end.job.state, 'succeeded');
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'every event once, in order');
    assert.deepEqual(sentIds, [null, '1', '2'], 'each reconnect resumes after the last event seen');
    assert.ok(states.includes('reconnecting'));
    log(`resumption: ${events.length} events over ${sentIds.length} connections`);

    // The page's handler throwing is not a dropped connection: followJob
    // rejects with that very error, without reconnecting.
    let connections = 0;
    globalThis.fetch = async (url, options) => {
      connections += 1;
      return realFetch(url, options);
    };
    const broken = new Error('the handler broke');
    await assert.rejects(
      followJob(`${base}/api/v1/deployments/${accepted.id}/events`, {
        headers,
        onEvent: () => {
          throw broken;
        },
      }),
      (err) => err === broken,
    );
    globalThis.fetch = realFetch;
    assert.equal(connections, 1, 'no reconnect after the handler threw');
    log('handler errors: not retried');
  },
};

const scenarioName = process.argv[2];
const run = scenarios[scenarioName];
if (!run) {
  console.error(`unknown scenario \`${scenarioName}\`; known: ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
try {
  await run();
  log('passed');
} catch (err) {
  console.error(`[${scenarioName}] FAILED: ${err.stack || err}`);
  process.exit(1);
}
