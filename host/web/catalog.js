// The catalog: every recipe as a card, with a search box and a category
// filter. Public: no token needed.

import { get, iconUrl } from './api.js';
import { fill, h } from './dom.js';

/** The recipe's icon, or its initial when it has none (or it fails to load). */
export function recipeIcon(recipe, size = 56) {
  const fallback = () => h('span', { class: 'icon placeholder', 'aria-hidden': 'true' }, (recipe.name || recipe.id).slice(0, 1).toUpperCase());
  if (!recipe.icon) return fallback();
  const img = h('img', { class: 'icon', src: iconUrl(recipe.id), alt: '', width: size, height: size, loading: 'lazy' });
  img.addEventListener('error', () => img.replaceWith(fallback()));
  return img;
}

export async function catalogView({ main, signal, params }) {
  fill(main, h('h1', {}, 'Catalog'), h('p', { class: 'muted' }, 'Loading the catalog…'));
  const { recipes } = await get('/catalog', { signal });
  const categories = [...new Set(recipes.map((r) => r.category))].sort();

  const search = h('input', {
    id: 'catalog-search',
    type: 'search',
    autocomplete: 'off',
    placeholder: 'Name, description…',
    value: params.get('q') || '',
  });
  const category = h(
    'select',
    { id: 'catalog-category' },
    h('option', { value: '' }, 'All categories'),
    categories.map((c) => h('option', { value: c }, c)),
  );
  category.value = categories.includes(params.get('category')) ? params.get('category') : '';
  const count = h('p', { class: 'muted', id: 'catalog-count', role: 'status' });
  const grid = h('ul', { class: 'cards', id: 'catalog-grid', 'aria-label': 'Apps' });

  const card = (recipe) =>
    h(
      'li',
      { class: 'card', dataset: { recipe: recipe.id, category: recipe.category } },
      h(
        'div',
        { class: 'card-head' },
        recipeIcon(recipe),
        h('div', {}, h('h2', {}, h('a', { href: `#/recipes/${recipe.id}`, class: 'stretched' }, recipe.name)), h('span', { class: 'badge' }, recipe.category)),
      ),
      h('p', {}, recipe.description),
      h('p', { class: 'muted small' }, `Version ${recipe.version}`),
    );

  // The count is a live region: screen readers hear it change.
  const update = () => {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const chosen = category.value;
    const shown = recipes.filter((r) => {
      if (chosen && r.category !== chosen) return false;
      const text = `${r.name} ${r.id} ${r.description} ${r.category}`.toLowerCase();
      return words.every((w) => text.includes(w));
    });
    fill(grid, shown.map(card));
    const message = recipes.length === 0
      ? 'The catalog is empty: install recipe bundles in Settings.'
      : shown.length === 0
        ? 'No app matches.'
        : `${shown.length} of ${recipes.length} apps`;
    count.textContent = message;
    // Keep the filter in the address (no new history entry, no re-render).
    const query = new URLSearchParams();
    if (search.value.trim()) query.set('q', search.value.trim());
    if (chosen) query.set('category', chosen);
    const wanted = query.toString() ? `#/?${query}` : '#/';
    if (location.hash !== wanted && (location.hash || wanted !== '#/')) history.replaceState(null, '', wanted);
  };
  search.addEventListener('input', update);
  category.addEventListener('change', update);

  fill(
    main,
    h('h1', {}, 'Catalog'),
    h(
      'form',
      { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('div', { class: 'field' }, h('label', { for: 'catalog-search' }, 'Search apps'), search),
      h('div', { class: 'field' }, h('label', { for: 'catalog-category' }, 'Category'), category),
    ),
    count,
    grid,
  );
  update();
}
