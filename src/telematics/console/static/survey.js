// The satisfaction survey after an order, answered in the page: the instrument's questions in
// the page's language, each scored 1 (worst) to 10 (best) or left out; at least one answer.
// POST /v1/surveys as the customer, for its own completed order (one survey per order).

import { api, currentLanguage, h, problem, t } from "./api.js";

let instrument = null;

async function questions() {
  if (!instrument) instrument = api("GET", "/v1/satisfaction/instrument").catch((err) => { instrument = null; throw err; });
  return instrument;
}

export function surveyForm(order, me, onDone) {
  const box = h("section", { class: "survey", "aria-labelledby": `survey-${order.order_id}` },
    h("h3", { id: `survey-${order.order_id}` }, t("survey.heading")));
  const message = h("div", { role: "status" });
  (async () => {
    let found;
    try {
      found = await questions();
    } catch (err) {
      problem(box, err);
      return;
    }
    const zh = currentLanguage() === "zh-CN";
    const selects = [];
    const fields = found.constructs.flatMap((c) => c.items).map((item) => {
      const id = `q-${order.order_id}-${item.item}`;
      const select = h("select", { id, name: item.item },
        h("option", { value: "" }, t("survey.skip")),
        Array.from({ length: 10 }, (_, i) => h("option", { value: String(i + 1) }, String(i + 1))));
      selects.push(select);
      return h("div", { class: "question" }, h("label", { for: id }, zh ? item.text_zh : item.text_en), select);
    });
    const form = h("form", {
      onsubmit: async (e) => {
        e.preventDefault();
        message.replaceChildren();
        const answers = Object.fromEntries(selects.filter((s) => s.value).map((s) => [s.name, Number(s.value)]));
        if (Object.keys(answers).length === 0) {
          message.append(h("p", { class: "error" }, t("survey.empty")));
          return;
        }
        try {
          await api("POST", "/v1/surveys", {
            customer_id: me.subject_id, order_id: order.order_id, channel: "web",
            answered_at: new Date().toISOString(), answers,
          });
          onDone();
        } catch (err) {
          problem(message, err);
        }
      },
    }, h("p", { class: "hint" }, t("survey.hint")), fields, h("button", { type: "submit" }, t("survey.send")), message);
    box.append(form);
  })();
  return box;
}
