// The console's one way to the service: the /v1 API and the console's own routes, same origin
// only, with the session's CSRF token on every state-changing call. Also the strings of the
// chosen language and a DOM builder that only ever sets text (never HTML).

let csrf = null;
let strings = {};
let lang = "en";
let languages = ["en"];

export const LANG_COOKIE = "telematics_lang";

export function setCsrf(token) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  // The page's language: the API gives the knowledge base's texts (diagnoses, alarm titles) in
  // it. Not on the console's own routes: they choose the page's language from the browser's.
  if (path.startsWith("/v1/")) headers["Accept-Language"] = lang;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, (data && data.detail) || res.statusText);
  return data;
}

export async function loadStrings(wanted) {
  const query = wanted ? `?lang=${encodeURIComponent(wanted)}` : "";
  const found = await api("GET", `/console/strings${query}`);
  strings = found.strings;
  lang = found.lang;
  languages = found.languages;
  document.documentElement.lang = lang;
  document.title = t("app.title");
  return found;
}

export function saveLanguage(wanted) {
  document.cookie = `${LANG_COOKIE}=${encodeURIComponent(wanted)}; Path=/; Max-Age=31536000; SameSite=Strict`;
}

export function currentLanguage() {
  return lang;
}

export function allLanguages() {
  return languages;
}

export function t(key, params = {}) {
  let text = Object.hasOwn(strings, key) ? strings[key] : key;
  for (const [name, value] of Object.entries(params)) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString(lang) : t("never");
}

export function problem(root, err) {
  root.append(h("p", { role: "alert", class: "error" }, t("error", { detail: err.message })));
}

// What `request` (a promise) gives, or null once its error is shown in `note`; `note` is emptied
// of an earlier error either way.
export async function fetched(note, request) {
  try {
    const result = await request;
    note.replaceChildren();
    return result;
  } catch (err) {
    note.replaceChildren();
    problem(note, err);
    return null;
  }
}
