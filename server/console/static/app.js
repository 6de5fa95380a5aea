// The console's tabs (arrow keys move between them, as WAI-ARIA's tab pattern says) and its panels,
// each built the first time it is shown. window.hfchain exposes the in-browser models to scripts.
import { documentsPanel } from "./documents.js";
import { classifiersPanel } from "./classifiers.js";
import { agentPanel } from "./agent.js";
import { servicePanel } from "./service.js";
import { classifyInBrowser, embedInBrowser } from "./inbrowser.js";

window.hfchain = { classifyInBrowser, embedInBrowser };

const builders = { documents: documentsPanel, classifiers: classifiersPanel, agent: agentPanel, service: servicePanel };
const built = new Set();
const tabs = [...document.querySelectorAll("[role=tab]")];

function show(tab, focus = false) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  const name = tab.getAttribute("aria-controls");
  if (!built.has(name)) {
    built.add(name);
    builders[name](document.getElementById(name));
  }
  if (focus) tab.focus();
  history.replaceState(null, "", `#${name}`);
}

tabs.forEach((tab, i) => {
  tab.addEventListener("click", () => show(tab));
  tab.addEventListener("keydown", (event) => {
    const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    show(tabs[(moves[event.key] + tabs.length) % tabs.length], true);
  });
});

const asked = tabs.find((t) => `#${t.getAttribute("aria-controls")}` === location.hash);
show(asked || tabs[0]);
