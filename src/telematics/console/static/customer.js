// The customer's pages beyond the fleet list, and where the shell finds them: a machine's page
// (#/machines/{id}: work summaries as charts, maintenance, alarms) and the service orders
// (#/service: progress, the engineer's ETA, the survey after an order). Each page reads the
// /v1 API with the person's own session, so it shows what the API lets that person see.

import { t } from "./api.js";
import { showMachine } from "./machine.js";
import { showService } from "./service.js";

const MACHINE = /^#\/machines\/([A-Za-z0-9._:-]{1,64})(?:\?.*)?$/;

// Links of the header's navigation for this person, after the shell's own.
export function customerLinks(me) {
  return me.role === "customer" ? [["#/service", t("nav.service")]] : [];
}

// The view of an address, or null when it is not one of these pages (or not for this role).
export function customerPage(hash, me) {
  if (me.role === "engineer") return null;
  const machine = MACHINE.exec(hash);
  if (machine) return (root, shell) => showMachine(root, shell, decodeURIComponent(machine[1]));
  if (hash === "#/service" && me.role === "customer") return (root, shell) => showService(root, shell);
  return null;
}
