// A recipe's page (what it is, what it may do, what it needs) and the deploy
// form generated from its typed parameters.

import { ApiError, get, isAuthError, post, serverHealth } from './api.js';
import { announce, externalLink, fieldError, fill, h, mib, notice, shortDigest } from './dom.js';
import { recipeIcon } from './catalog.js';

/** Rows of the resources table; a maximum comes from the range, else from the lxc grant's bound. */
function resourceRows(resources, lxc = {}) {
  const rows = [
    ['CPU cores', resources.cores, (v) => String(v), lxc['max-cores']],
    ['Memory', resources['memory-mb'], mib, lxc['max-memory-mb']],
    ['Swap', resources['swap-mb'], mib, undefined],
    ['Disk', resources['disk-gb'], (v) => `${v} GB`, lxc['max-disk-gb']],
  ];
  return rows
    .filter(([, range]) => range)
    .map(([name, range, show, bound]) => {
      const max = range.max ?? bound;
      return h('tr', {}, h('th', { scope: 'row' }, name), h('td', {}, show(range.default)), h('td', {}, show(range.min)), h('td', {}, max ? show(max) : '—'));
    });
}

function header(detail) {
  return h(
    'div',
    { class: 'recipe-head' },
    recipeIcon(detail, 72),
    h('div', {}, h('h1', {}, detail.name), h('p', { class: 'lead' }, detail.description), h('p', {}, h('span', { class: 'badge' }, detail.category), ' ', `Version ${detail.version}`)),
  );
}

export function grantsList(lines) {
  if (!lines.length) return h('p', {}, 'Nothing: this recipe asks for no capability.');
  return h('ul', { class: 'grants' }, lines.map((line) => h('li', {}, line)));
}

export async function recipeView({ main, signal }, id) {
  fill(main, h('h1', {}, id), h('p', { class: 'muted' }, 'Loading…'));
  const detail = await get(`/recipes/${id}`, { signal });
  const manifest = detail.manifest;
  const meta = manifest.recipe;
  const ports = manifest.ports || [];
  const params = manifest.parameters || [];
  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Catalog'), ' / ', detail.name),
    header(detail),
    h('p', {}, h('a', { class: 'button', href: `#/recipes/${id}/deploy` }, `Deploy ${detail.name}…`)),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Version'),
      h('dd', {}, detail.version),
      meta.website ? [h('dt', {}, 'Website'), h('dd', {}, externalLink(meta.website))] : null,
      h('dt', {}, 'Digest'),
      h('dd', {}, shortDigest(detail.digest)),
    ),
    meta.notes ? h('section', { 'aria-labelledby': 'notes-h' }, h('h2', { id: 'notes-h' }, 'Notes'), h('p', { class: 'notes' }, meta.notes)) : null,
    h('section', { 'aria-labelledby': 'grants-h' }, h('h2', { id: 'grants-h' }, 'What it may do'), h('p', { class: 'muted' }, 'The host refuses anything outside these grants.'), grantsList(detail.grants)),
    h(
      'section',
      { 'aria-labelledby': 'resources-h' },
      h('h2', { id: 'resources-h' }, 'Resources'),
      h(
        'div',
        { class: 'table-wrap' },
        h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Resource'), h('th', { scope: 'col' }, 'Default'), h('th', { scope: 'col' }, 'Minimum'), h('th', { scope: 'col' }, 'Maximum'))), h('tbody', {}, resourceRows(manifest.resources || {}, (manifest.grants || {}).lxc || {}))),
      ),
    ),
    h(
      'section',
      { 'aria-labelledby': 'ports-h' },
      h('h2', { id: 'ports-h' }, 'Ports'),
      ports.length
        ? h('ul', {}, ports.map((p) => h('li', {}, `${p.port}/${p.protocol || 'tcp'}`, p.description ? ` — ${p.description}` : '')))
        : h('p', {}, 'None.'),
    ),
    h(
      'section',
      { 'aria-labelledby': 'params-h' },
      h('h2', { id: 'params-h' }, 'Parameters'),
      params.length
        ? h('ul', {}, params.map((p) => h('li', {}, h('code', {}, p.name), ` (${p.type}${p.required ? ', required' : ''})`, p.description ? `: ${p.description}` : '')))
        : h('p', {}, 'None.'),
    ),
  );
}

/** Random characters for a secret, from the browser's CSPRNG. */
export function generateSecret(length) {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  const out = [];
  // Rejection sampling keeps every character equally likely.
  const limit = 256 - (256 % alphabet.length);
  while (out.length < length) {
    const bytes = crypto.getRandomValues(new Uint8Array(length * 2));
    for (const b of bytes) {
      if (b < limit && out.length < length) out.push(alphabet[b % alphabet.length]);
    }
  }
  return out.join('');
}

/** One form field per parameter; returns {field, read(), showError(text)}. */
function paramField(spec) {
  const id = `param-${spec.name}`;
  const hintId = `${id}-hint`;
  const hints = [];
  if (spec.description) hints.push(spec.description);
  let input;
  let control;
  switch (spec.type) {
    case 'boolean':
      input = h('input', { id, name: spec.name, type: 'checkbox', checked: spec.default === true });
      control = h('div', { class: 'check' }, input, h('label', { for: id }, spec.name));
      break;
    case 'enum': {
      input = h('select', { id, name: spec.name }, spec.required || spec.default !== undefined ? null : h('option', { value: '' }, '(none)'), (spec.choices || []).map((c) => h('option', { value: c }, c)));
      if (spec.default !== undefined) input.value = String(spec.default);
      control = input;
      break;
    }
    case 'integer':
      input = h('input', { id, name: spec.name, type: 'number', inputmode: 'numeric', step: '1', min: spec.min, max: spec.max, value: spec.default !== undefined ? String(spec.default) : '' });
      if (spec.min !== undefined || spec.max !== undefined) hints.push(`A whole number${spec.min !== undefined ? ` from ${spec.min}` : ''}${spec.max !== undefined ? ` up to ${spec.max}` : ''}.`);
      control = input;
      break;
    case 'secret': {
      const length = Math.min(Math.max(spec.length || 32, spec['min-length'] || 0), spec['max-length'] || 128);
      input = h('input', { id, name: spec.name, type: 'password', autocomplete: 'new-password', spellcheck: 'false', value: '' });
      const show = h('button', { type: 'button', class: 'button secondary small', 'aria-pressed': 'false', 'aria-controls': id }, 'Show');
      show.addEventListener('click', () => {
        const visible = input.type === 'password';
        input.type = visible ? 'text' : 'password';
        show.setAttribute('aria-pressed', String(visible));
        show.textContent = visible ? 'Hide' : 'Show';
      });
      const generate = h('button', { type: 'button', class: 'button secondary small', 'aria-controls': id }, 'Generate');
      generate.addEventListener('click', () => {
        input.value = generateSecret(length);
        announce(`A ${length}-character value was generated for ${spec.name}.`);
      });
      hints.push(spec.generate ? 'Secret. Leave it empty and the server generates one; you can read it later under Apps.' : 'Secret: stored encrypted, never shown in logs.');
      control = h('div', { class: 'secret' }, input, generate, show);
      break;
    }
    default: {
      const long = (spec['max-length'] || 0) > 200;
      input = h(long ? 'textarea' : 'input', { id, name: spec.name, type: long ? null : 'text', rows: long ? 3 : null, value: spec.default !== undefined ? String(spec.default) : '' });
      if (long && spec.default !== undefined) input.value = String(spec.default);
      control = input;
    }
  }
  const sentence = (text) => (/[.!?:]$/.test(text) ? text : `${text}.`);
  const hint = h('p', { class: 'hint', id: hintId }, hints.map(sentence).join(' '));
  const error = fieldError(id, input, hintId);
  const label = spec.type === 'boolean' ? null : h('label', { for: id }, spec.name, spec.required ? h('span', { class: 'required' }, ' (required)') : null);
  const field = h('div', { class: 'field', dataset: { param: spec.name } }, label, control, hint, error.element);
  return {
    name: spec.name,
    field,
    input,
    showError: error.showError,
    read() {
      if (spec.type === 'boolean') return input.checked;
      const value = input.value;
      if (value === '') return undefined;
      if (spec.type === 'integer' && /^-?\d+$/.test(value.trim())) return Number(value.trim());
      return value;
    },
  };
}

/** A plain number field (resources), with the same error slot. */
function numberField(id, label, range, unit) {
  const hintId = `${id}-hint`;
  const input = h('input', { id, type: 'number', inputmode: 'numeric', step: '1', min: range.min, max: range.max, value: String(range.default) });
  const hint = h('p', { class: 'hint', id: hintId }, `${unit}; at least ${range.min}${range.max ? `, at most ${range.max}` : ''}.`);
  const error = fieldError(id, input, hintId);
  return {
    field: h('div', { class: 'field' }, h('label', { for: id }, label), input, hint, error.element),
    input,
    showError: error.showError,
    read() {
      const v = input.value.trim();
      if (v === '' || Number(v) === range.default) return undefined;
      return /^\d+$/.test(v) ? Number(v) : v;
    },
  };
}

export async function deployView({ main, signal }, id) {
  fill(main, h('h1', {}, `Deploy ${id}`), h('p', { class: 'muted' }, 'Loading…'));
  const [detail, info] = await Promise.all([get(`/recipes/${id}`, { signal }), serverHealth()]);
  const manifest = detail.manifest;
  const fields = (manifest.parameters || []).map(paramField);
  const resources = manifest.resources || {};
  const lxc = (manifest.grants || {}).lxc || {};
  const bounded = (range, grant) => ({ ...range, max: range.max ?? lxc[grant] });
  const extra = {
    app_id: (() => {
      const input = h('input', { id: 'deploy-app-id', type: 'text', autocomplete: 'off', spellcheck: 'false' });
      const error = fieldError('deploy-app-id', input, 'deploy-app-id-hint');
      return {
        field: h('div', { class: 'field' }, h('label', { for: 'deploy-app-id' }, 'App name'), input, h('p', { class: 'hint', id: 'deploy-app-id-hint' }, `Optional: lowercase letters, digits and dashes. The server picks one (like ${id}-1a2b) when empty.`), error.element),
        input,
        read: () => input.value.trim() || undefined,
        showError: error.showError,
      };
    })(),
    cores: resources.cores && numberField('deploy-cores', 'CPU cores', bounded(resources.cores, 'max-cores'), 'Cores'),
    'memory-mb': resources['memory-mb'] && numberField('deploy-memory', 'Memory (MiB)', bounded(resources['memory-mb'], 'max-memory-mb'), 'MiB'),
    'disk-gb': resources['disk-gb'] && numberField('deploy-disk', 'Disk (GB)', bounded(resources['disk-gb'], 'max-disk-gb'), 'GB'),
  };
  const node = h('input', { id: 'deploy-node', type: 'text', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'deploy-node-hint' });
  const dryRun = h('input', { id: 'deploy-dry-run', type: 'checkbox' });
  const summary = h('div', { id: 'deploy-problems', tabindex: '-1' });
  const submit = h('button', { type: 'submit', class: 'button' }, 'Deploy');
  dryRun.addEventListener('change', () => {
    submit.textContent = dryRun.checked ? 'Show the plan' : 'Deploy';
  });

  const form = h(
    'form',
    { id: 'deploy-form', novalidate: true, 'aria-labelledby': 'deploy-h' },
    summary,
    h('fieldset', {}, h('legend', {}, 'Parameters'), fields.length ? fields.map((f) => f.field) : h('p', {}, 'This recipe takes no parameters.')),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Where'),
      extra.app_id.field,
      h('div', { class: 'field' }, h('label', { for: 'deploy-node' }, 'Node'), node, h('p', { class: 'hint', id: 'deploy-node-hint' }, 'Optional: the Proxmox node (target.node). The server chooses when empty.')),
      h('p', { class: 'backend' }, 'Backend: ', h('strong', { id: 'deploy-backend' }, info ? info.backend : 'unknown'), info && info.backend === 'sim' ? ' (simulated: nothing real is created)' : ''),
    ),
    h('details', { class: 'resources' }, h('summary', {}, 'Resources'), [extra.cores, extra['memory-mb'], extra['disk-gb']].filter(Boolean).map((f) => f.field)),
    h('div', { class: 'check' }, dryRun, h('label', { for: 'deploy-dry-run' }, 'Dry run: show the plan (containers, commands, files) without creating anything')),
    h('p', { class: 'actions' }, submit, ' ', h('a', { href: `#/recipes/${id}`, class: 'button secondary' }, 'Back')),
  );

  const isResource = (f) => f === extra.cores || f === extra['memory-mb'] || f === extra['disk-gb'];
  // Parameters by name; resources as `resources.NAME`, apart from a
  // parameter that happens to be called `cores`.
  const byName = new Map(fields.map((f) => [f.name, f]));
  if (extra.app_id) byName.set('app_id', extra.app_id);
  for (const key of ['cores', 'memory-mb', 'disk-gb']) if (extra[key]) byName.set(`resources.${key}`, extra[key]);
  // The field a server problem is about: `resources.memory_mb` (the request's
  // spelling) and `resources.memory-mb` alike; a bare resource name only when
  // no parameter has it.
  const fieldFor = (name) => {
    const resource = /^resources\./.test(name) ? name.slice('resources.'.length).replace(/_/g, '-') : null;
    if (resource) return byName.get(`resources.${resource}`);
    return byName.get(name) || byName.get(`resources.${name.replace(/_/g, '-')}`);
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const f of byName.values()) f.showError('');
    summary.replaceChildren();
    // A number field holding a non-number reads as empty: sent as is, the
    // server would quietly use the default instead of what was typed.
    const unreadable = [...byName.values()].filter((f) => f.input.validity && f.input.validity.badInput);
    if (unreadable.length) {
      for (const f of unreadable) f.showError('Not a number: enter digits only.');
      if (unreadable.some(isResource)) form.querySelector('details.resources').open = true;
      fill(summary, notice('error', h('p', {}, 'Not sent: fix the fields marked below.')));
      unreadable[0].input.focus();
      return;
    }
    const params = {};
    for (const f of fields) {
      const value = f.read();
      if (value !== undefined) params[f.name] = value;
    }
    const body = { recipe: id, params, dry_run: dryRun.checked };
    const appId = extra.app_id.read();
    if (appId) body.app_id = appId;
    const res = {};
    if (extra.cores && extra.cores.read() !== undefined) res.cores = extra.cores.read();
    if (extra['memory-mb'] && extra['memory-mb'].read() !== undefined) res.memory_mb = extra['memory-mb'].read();
    if (extra['disk-gb'] && extra['disk-gb'].read() !== undefined) res.disk_gb = extra['disk-gb'].read();
    if (Object.keys(res).length) body.resources = res;
    if (node.value.trim()) body.target = { node: node.value.trim() };
    submit.disabled = true;
    try {
      const accepted = await post('/deployments', body);
      location.hash = `#/jobs/${accepted.id}`;
    } catch (err) {
      submit.disabled = false;
      showProblems(err);
    }
  });

  function showProblems(err) {
    if (isAuthError(err)) {
      fill(summary, notice('error', 'Deploying needs an API token: ', h('a', { href: '#/settings' }, 'enter it in Settings'), '.'));
      summary.focus();
      return;
    }
    if (!(err instanceof ApiError) || err.code !== 'invalid-params') {
      fill(summary, notice('error', err.message));
      summary.focus();
      return;
    }
    const loose = [];
    let first = null;
    for (const problem of err.details) {
      const target = fieldFor(problem.field);
      if (target) {
        target.showError(problem.problem);
        if (isResource(target)) {
          form.querySelector('details.resources').open = true;
        }
        first = first || target.input;
      } else {
        loose.push(problem);
      }
    }
    fill(
      summary,
      notice(
        'error',
        h('p', {}, err.message, ': fix the fields marked below.'),
        loose.length ? h('ul', {}, loose.map((p) => h('li', {}, `${p.field}: ${p.problem}`))) : null,
      ),
    );
    if (first) first.focus();
    else summary.focus();
  }

  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Catalog'), ' / ', h('a', { href: `#/recipes/${id}` }, detail.name), ' / Deploy'),
    h('h1', { id: 'deploy-h' }, `Deploy ${detail.name}`),
    h('p', { class: 'muted' }, `Version ${detail.version}. `, 'What it may do: ', detail.grants.join('; ') || 'nothing', '.'),
    form,
  );
}
