// DOM helpers shared by every page. Text always goes in as text nodes
// (never innerHTML), so nothing the API returns can inject markup.

import { ProblemError } from './api.js';

/** Creates an element: `attrs` are attributes (`on*` functions become listeners). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** SVG elements (the run graph). */
export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

/** Replaces the content of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

let fieldCounter = 0;

/** A labelled form control; `control` is an input, select or textarea. */
export function field(label, control, hint) {
  fieldCounter += 1;
  const id = control.id || `field-${fieldCounter}`;
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('small', {}, hint) : null);
}

/** A `<select>` of `options` (strings or [value, label]). */
export function select(name, options, value) {
  return h(
    'select',
    { name },
    options.map((option) => {
      const [optionValue, label] = Array.isArray(option) ? option : [option, option];
      return h('option', { value: optionValue, selected: optionValue === value }, label);
    }),
  );
}

/** The API's refusal shown as its own problem message (title and detail). */
export function problemBox(error) {
  if (!(error instanceof ProblemError)) {
    return h('div', { class: 'problem', role: 'alert' }, h('strong', {}, 'Error'), h('p', {}, String(error && error.message ? error.message : error)));
  }
  const problem = error.problem || {};
  const violations = Array.isArray(problem.violations) ? problem.violations : [];
  return h(
    'div',
    { class: 'problem', role: 'alert', 'data-status': error.status },
    h('strong', { class: 'problem-title' }, problem.title || `HTTP ${error.status}`),
    error.status ? h('span', { class: 'problem-status' }, ` (${error.status})`) : null,
    problem.detail ? h('p', { class: 'problem-detail' }, problem.detail) : null,
    violations.length
      ? h('ul', {}, violations.map((violation) => h('li', {}, `${violation.pointer || ''} ${violation.message || ''}`)))
      : null,
    problem.request_id ? h('small', {}, `request id ${problem.request_id}`) : null,
  );
}

/** A status message area; `show(node)` replaces its content. */
export function messageArea() {
  const area = h('div', { class: 'messages', 'aria-live': 'polite' });
  return {
    element: area,
    show(...children) {
      replace(area, ...children);
    },
    problem(error) {
      replace(area, problemBox(error));
    },
    ok(text) {
      replace(area, h('p', { class: 'ok', role: 'status' }, text));
    },
    clear() {
      area.replaceChildren();
    },
  };
}

/** Runs `action`, showing its refusal in `messages`; resolves to its value or undefined. */
export async function attempt(messages, action) {
  try {
    return await action();
  } catch (error) {
    messages.problem(error);
    return undefined;
  }
}

/** A table of `rows` with `columns` ([header, row => cell]). */
export function table(columns, rows, caption) {
  return h(
    'table',
    {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, columns.map(([header]) => h('th', { scope: 'col' }, header)))),
    h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([, cell]) => h('td', {}, cell(row)))))),
  );
}

/** Pretty JSON in a `<pre>`. */
export function json(value) {
  // Focusable: a long document scrolls, and keyboard users must reach it.
  return h('pre', { class: 'json', tabindex: 0 }, JSON.stringify(value, null, 2));
}

/** An ISO time shown in the user's locale, with the exact value as title. */
export function time(value) {
  if (value === undefined || value === null || value === '') return '';
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return h('time', { datetime: date.toISOString(), title: date.toISOString() }, date.toLocaleString());
}

/** A section with a heading. */
export function section(title, ...children) {
  return h('section', {}, h('h2', {}, title), ...children);
}

/** The form's values as an object of trimmed strings (checkboxes as booleans). */
export function formValues(form) {
  const values = {};
  for (const element of form.elements) {
    if (!element.name) continue;
    values[element.name] = element.type === 'checkbox' ? element.checked : element.value.trim();
  }
  return values;
}

/** A console link to `page` with path parts (each encoded). */
export function routeHref(page, ...parts) {
  return `#/${[page, ...parts.map(encodeURIComponent)].join('/')}`;
}
