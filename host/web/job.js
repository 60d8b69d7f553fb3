// A job's live progress: its steps as a checklist fed by the job's event
// stream, each step's log lines behind a disclosure, then either the result
// (the app's address, where its credentials are, or a dry run's plan) or a
// failure panel (the step, the error, what was cleaned up).

import { PREFIX, authHeaders, del, get, isAuthError } from './api.js';
import { announce, confirmAction, externalLink, fill, h, notice, seconds, showSecrets } from './dom.js';
import { followJob } from './sse.js';

const TITLES = {
  install: (job) => (job.dry_run ? `Dry run of ${job.recipe}` : `Deploying ${job.recipe}`),
  upgrade: (job) => `Upgrading ${job.app_id}`,
  uninstall: (job) => `Uninstalling ${job.app_id}`,
};

const STATE_WORDS = { done: 'done', active: 'in progress', failed: 'failed', pending: 'not started' };

/** One checklist entry, with its own log. */
function stepItem(name) {
  const status = h('span', { class: 'visually-hidden' });
  const mark = h('span', { class: 'mark', 'aria-hidden': 'true' });
  const count = h('span', { class: 'count' });
  const lines = h('ol', { class: 'log-lines' });
  const log = h('details', { class: 'step-log', hidden: true }, h('summary', {}, 'Log ', count), lines);
  const li = h('li', { class: 'step' }, h('div', { class: 'step-line' }, mark, h('span', { class: 'step-name' }, name), status), log);
  const item = {
    li,
    name,
    lines: 0,
    set(state) {
      li.dataset.state = state;
      status.textContent = ` (${STATE_WORDS[state]})`;
    },
    add(event) {
      item.lines += 1;
      log.hidden = false;
      count.textContent = `(${item.lines} line${item.lines === 1 ? '' : 's'})`;
      const level = event.level || (event.kind === 'host' ? 'host' : 'info');
      lines.append(h('li', { class: `line ${level}` }, h('span', { class: 'when' }, seconds(event.elapsed_ms)), ' ', h('span', { class: 'level' }, level), ' ', event.message || ''));
    },
  };
  item.set('pending');
  return item;
}

function describeStep(step) {
  const where = step.id ? ` in ${step.id}` : '';
  switch (step.op) {
    case 'create-lxc': {
      const spec = step.spec || {};
      const field = (name) => spec[name] ?? spec[name.replace(/_/g, '-')];
      const parts = [field('hostname'), field('os_template'), field('cores') && `${field('cores')} cores`, field('memory_mb') && `${field('memory_mb')} MiB`, field('disk_gb') && `${field('disk_gb')} GB disk`].filter(Boolean);
      return [`Create container ${step.id} on ${step.node}`, parts.length ? ` (${parts.join(', ')})` : '', h('details', {}, h('summary', {}, 'Container spec'), h('pre', {}, JSON.stringify(spec, null, 2)))];
    }
    case 'exec':
      return ['Run ', h('code', {}, step.argv.join(' ')), `${where} (timeout ${Math.round(step.timeout_ms / 1000)} s)`];
    case 'write-file':
      return [
        'Write ', h('code', {}, step.path), `${where} (${step.size} bytes, mode ${step.mode.toString(8).padStart(4, '0')})`,
        step.text !== undefined ? h('details', {}, h('summary', {}, 'Contents'), h('pre', {}, step.text)) : null,
      ];
    case 'start':
      return [`Start container ${step.id}`];
    case 'stop':
      return [`Stop container ${step.id}`];
    case 'destroy':
      return [`Destroy container ${step.id}`];
    case 'read-file':
      return ['Read ', h('code', {}, step.path), where];
    case 'wait-tcp':
      return [`Wait for port ${step.port}${where}`];
    case 'wait-http':
      return [`Wait for HTTP${where}`, step.probe ? [' ', h('code', {}, `${step.probe.path || '/'} on port ${step.probe.port}`)] : ''];
    case 'proxy-exec':
      return ['Proxy ', h('code', {}, `${step.service}: ${step.command} ${step.args.join(' ')}`)];
    default:
      return [`${step.op}${where}`];
  }
}

function planView(plan) {
  return h(
    'section',
    { id: 'job-plan', 'aria-labelledby': 'plan-h' },
    h('h2', { id: 'plan-h' }, 'The plan'),
    h('p', { class: 'muted' }, 'What a real deploy would do, in order. Secrets appear as «secret:NAME».'),
    h('ol', { class: 'plan' }, plan.map((step) => h('li', { dataset: { op: step.op } }, describeStep(step)))),
  );
}

async function successPanel(job, signal) {
  const result = job.result || {};
  if (job.dry_run) {
    return [notice('ok', h('strong', {}, 'Dry run finished. '), 'Nothing was created.'), Array.isArray(result.plan) ? planView(result.plan) : null];
  }
  if (job.kind === 'uninstall') {
    return notice('ok', h('strong', {}, `${job.app_id} was uninstalled. `), 'Its containers are gone. ', h('a', { href: '#/apps' }, 'Back to the apps'));
  }
  const info = result.app || {};
  let app = null;
  try {
    app = await get(`/apps/${encodeURIComponent(job.app_id)}`, { signal });
  } catch {
    app = null;
  }
  const url = info.url || (app && app.url);
  const address = info.address || (app && app.address);
  const secrets = app ? app.secrets : [];
  const secretsBox = h('div', { id: 'job-secrets' });
  return h(
    'div',
    { class: 'notice ok', id: 'job-success', role: 'status' },
    h('h2', {}, job.kind === 'upgrade' ? `${job.app_id} was upgraded` : `${job.app_id} is running`),
    h(
      'dl',
      { class: 'facts' },
      url ? [h('dt', {}, 'Address'), h('dd', {}, externalLink(url))] : address ? [h('dt', {}, 'Address'), h('dd', {}, address)] : null,
      info.ports && info.ports.length ? [h('dt', {}, 'Ports'), h('dd', {}, info.ports.join(', '))] : null,
    ),
    secrets.length
      ? h(
          'p',
          {},
          `Generated credentials (${secrets.join(', ')}) are kept encrypted on the server. Read them under `,
          h('a', { href: `#/apps/${encodeURIComponent(job.app_id)}` }, `Apps → ${job.app_id}`),
          ' or here: ',
          h('button', { type: 'button', class: 'button secondary small', onclick: (e) => showSecrets(job.app_id, secretsBox, e.target) }, 'Show credentials'),
        )
      : null,
    secretsBox,
    h('p', {}, h('a', { href: `#/apps/${encodeURIComponent(job.app_id)}` }, 'Manage this app')),
  );
}

function failurePanel(job, currentStep) {
  const error = job.error || {};
  // A job failed by restart recovery has only a kind and a message: no
  // cleanup record, so say nothing about containers it does not know of.
  const cleanupKnown = Array.isArray(error.destroyed);
  const destroyed = cleanupKnown ? error.destroyed : [];
  const leftBehind = error.left_behind || [];
  const step = error.step || (currentStep && currentStep.name);
  const title = job.state === 'cancelled' ? 'Cancelled' : job.state === 'interrupted' ? 'Interrupted' : 'Failed';
  return h(
    'section',
    { class: 'notice error failure', id: 'job-failure', role: 'alert', 'aria-labelledby': 'failure-h' },
    h('h2', { id: 'failure-h' }, `${title}${step ? ` during “${step}”` : ''}`),
    h('dl', { class: 'facts' },
      step ? [h('dt', {}, 'Step'), h('dd', { id: 'failure-step' }, step)] : null,
      h('dt', {}, 'Error'), h('dd', { id: 'failure-error' }, error.message || 'no message'),
      h('dt', {}, 'Cleaned up'),
      h('dd', { id: 'failure-cleanup' },
        destroyed.length ? `Destroyed ${destroyed.length === 1 ? 'container' : 'containers'} ${destroyed.join(', ')}.`
          : cleanupKnown ? 'Nothing to destroy: no container was left from this run.'
            : 'Not recorded: see the error above for what happened to this run.',
        leftBehind.length ? [' ', h('strong', {}, `Left behind: ${leftBehind.join(', ')}`), ' (remove by hand, or keep for debugging).'] : ''),
    ),
    h('p', {}, h('a', { href: `#/recipes/${encodeURIComponent(job.recipe)}/deploy` }, 'Back to the form'), ' · ', h('a', { href: '#/apps' }, 'Apps')),
  );
}

export async function jobView({ main, signal }, id) {
  fill(main, h('h1', {}, 'Job'), h('p', { class: 'muted' }, 'Loading…'));
  let job;
  try {
    job = await get(`/deployments/${encodeURIComponent(id)}`, { signal });
  } catch (err) {
    if (isAuthError(err)) {
      fill(main, h('h1', {}, 'Job'), notice('error', 'Following a job needs an API token: ', h('a', { href: '#/settings' }, 'enter it in Settings'), '.'));
      return;
    }
    throw err;
  }
  const title = (TITLES[job.kind] || (() => `Job ${id}`))(job);
  const status = h('p', { id: 'job-status', class: 'job-status', role: 'status' });
  const connection = h('p', { class: 'muted small', id: 'job-connection' });
  const steps = h('ol', { id: 'job-steps', class: 'steps', 'aria-label': 'Steps' });
  const outcome = h('div', { id: 'job-outcome' });
  const cancel = h('button', { type: 'button', class: 'button danger secondary', id: 'job-cancel' }, 'Cancel');
  cancel.addEventListener('click', async () => {
    const ok = await confirmAction({ title: 'Cancel this job?', body: 'The recipe is stopped and whatever it created is destroyed.', confirm: 'Cancel the job', danger: true });
    if (!ok) return;
    try {
      await del(`/deployments/${encodeURIComponent(id)}`);
    } catch (err) {
      fill(connection, err.message);
    }
  });
  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/apps' }, 'Apps'), ' / ', `Job ${id}`),
    h('h1', {}, title),
    h('p', { class: 'muted' }, `${job.recipe} ${job.version} · app ${job.app_id}`),
    status,
    connection,
    h('p', {}, cancel),
    steps,
    outcome,
  );

  const items = [];
  let current = null;
  const setStatus = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };
  // The final state is shown only once the stream's `end` has arrived, with
  // every step before it.
  if (job.state === 'queued') setStatus('queued', 'Queued: waiting for a free slot…');
  else if (job.state === 'running') setStatus('running', 'Running…');
  else setStatus('replaying', 'Reading the job\'s events…');

  const start = (name) => {
    if (current) current.set('done');
    current = stepItem(name);
    current.set('active');
    items.push(current);
    steps.append(current.li);
    return current;
  };

  const onEvent = (event) => {
    if (event.kind === 'step') {
      start(event.name || 'step');
      setStatus('running', `Running: ${event.name}`);
      announce(`Step: ${event.name}`);
    } else if (event.kind === 'log' || event.kind === 'host') {
      if (!current) {
        // Notes before the recipe's first step (queueing, the backend).
        start('Preparing').li.classList.add('preparing');
      }
      current.add(event);
    }
  };

  // The stream is followed after the view is shown: the view is not "busy"
  // while the job runs, so its status changes are announced.
  follow().catch((err) => {
    if (err.name !== 'AbortError') fill(outcome, notice('error', err.message));
  });

  async function follow() {
  let end;
  try {
    end = await followJob(`${PREFIX}/deployments/${encodeURIComponent(id)}/events`, {
      headers: authHeaders(),
      signal,
      onEvent,
      onState: (state) => {
        connection.textContent = state === 'reconnecting' ? 'Connection lost: reconnecting and resuming where it stopped…' : '';
      },
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    fill(outcome, notice('error', `The event stream failed: ${err.message}`));
    return;
  }
  cancel.remove();
  const final = end.job || (await get(`/deployments/${encodeURIComponent(id)}`, { signal }));
  if (final.state === 'succeeded') {
    if (current) current.set('done');
    const done = stepItem('Done');
    done.set('done');
    steps.append(done.li);
    setStatus('succeeded', `Finished in ${seconds(end.elapsed_ms)}.`);
    fill(outcome, await successPanel(final, signal));
    announce(`${title}: finished.`);
  } else {
    if (current) current.set('failed');
    setStatus(final.state, `${final.state[0].toUpperCase()}${final.state.slice(1)} after ${seconds(end.elapsed_ms)}.`);
    fill(outcome, failurePanel(final, current));
    announce(`${title}: ${final.state}.`);
  }
  }
}
