// The console's shell: who is signed in, the header and navigation, the language switch, and
// which view the address (#/...) shows. Views are functions (root, shell) -> cleanup.

import { api, ApiError, allLanguages, currentLanguage, h, loadStrings, problem, saveLanguage, setCsrf, t } from "./api.js";
import { showQueue } from "./queue.js";
import { showAlarm } from "./alarm.js";
import { showOrders } from "./orders.js";
import { showFleet } from "./fleet.js";
import { customerLinks, customerPage } from "./customer.js";
import { CONTROL_CENTRE, controlCentreLinks, controlCentreView } from "./centre.js";

const top = document.getElementById("top");
const main = document.getElementById("main");
const LANGUAGE_NAMES = { en: "English", "zh-CN": "简体中文" };
let me = null;
let cleanup = null;

function home() {
  if (!me) return "#/";
  if (me.role === "engineer") return "#/orders";
  if (me.role === "customer") return "#/fleet";
  if (me.role === "monitor") return "#/desk";
  return "#/alarms";
}

function navigation() {
  if (!me) return [];
  const links = [];
  if (!["engineer", "monitor"].includes(me.role)) links.push(["#/alarms", t("nav.alarms")]);
  if (me.role === "engineer" || me.role === "admin") links.push(["#/orders", t("nav.orders")]);
  if (me.role === "customer") links.push(["#/fleet", t("nav.fleet")]);
  links.push(...customerLinks(me));
  if (CONTROL_CENTRE.includes(me.role)) links.push(...controlCentreLinks(me.role));
  return links.map(([href, text]) =>
    h("a", { href, "aria-current": location.hash.startsWith(href) ? "page" : null }, text));
}

function languageSwitch() {
  const select = h("select", {
    id: "language",
    onchange: async (event) => {
      saveLanguage(event.target.value);
      await loadStrings(event.target.value);
      render();
    },
  }, allLanguages().map((code) =>
    h("option", { value: code, selected: code === currentLanguage() }, LANGUAGE_NAMES[code] || code)));
  return h("label", { class: "language" }, t("language"), " ", select);
}

async function signOut() {
  if (cleanup) cleanup();
  cleanup = null;
  try {
    await api("DELETE", "/console/session");
  } finally {
    me = null;
    setCsrf(null);
    location.hash = "#/";
    render();
  }
}

function header() {
  const who = me ? h("span", { class: "who" }, t("signed_in_as", { role: t(`role.${me.role}`), who: me.subject_id })) : null;
  const out = me ? h("button", { type: "button", onclick: signOut }, t("signout")) : null;
  top.replaceChildren(
    h("span", { class: "brand" }, t("app.title")),
    h("nav", { "aria-label": "main" }, navigation()),
    h("span", { class: "tools" }, who, languageSwitch(), out),
  );
}

function signIn() {
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const message = h("p", { role: "alert", class: "error", hidden: true });
  const form = h("form", {
    class: "signin",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        me = await api("POST", "/console/session", { token: input.value });
        setCsrf(me.csrf_token);
        location.hash = home();
        render();
      } catch (err) {
        message.textContent = err instanceof ApiError && err.status === 401 ? t("signin.failed") : t("error", { detail: err.message });
        message.hidden = false;
      }
    },
  },
  h("h1", {}, t("signin.heading")),
  h("p", {}, t("signin.hint")),
  h("label", { for: "token" }, t("signin.token")),
  input,
  h("button", { type: "submit" }, t("signin.submit")),
  message);
  main.replaceChildren(form);
  input.focus();
}

const shell = {
  me: () => me,
  signedOut: () => {
    me = null;
    setCsrf(null);
    render();
  },
};

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  header();
  if (!me) return signIn();
  const hash = location.hash || home();
  const alarm = /^#\/alarms\/(\d+)$/.exec(hash);
  main.replaceChildren();
  if (alarm) cleanup = showAlarm(main, shell, Number(alarm[1]));
  else if (hash.startsWith("#/alarms") && !["engineer", "monitor"].includes(me.role)) cleanup = showQueue(main, shell);
  else if (controlCentreView(hash, me.role)) cleanup = controlCentreView(hash, me.role)(main, shell);
  else if (hash === "#/orders" && (me.role === "engineer" || me.role === "admin")) cleanup = showOrders(main, shell);
  else if (hash === "#/fleet" && me.role === "customer") cleanup = showFleet(main, shell);
  else if (customerPage(hash, me)) cleanup = customerPage(hash, me)(main, shell);
  else if (hash !== home()) location.hash = home();
}

async function start() {
  try {
    await loadStrings();
    const found = await api("GET", "/console/session");
    me = found.signed_in ? found : null;
    setCsrf(me ? me.csrf_token : null);
  } catch (err) {
    problem(main, err);
    return;
  }
  window.addEventListener("hashchange", render);
  render();
}

start();
