// Glasshouse browser extension (Manifest V3 service worker).
//
// Reports the active tab to the Glasshouse agent on this computer over native messaging
// (host "com.glasshouse.agent", started by the browser; see README.md), and only what the agent
// asks for: the agent's config says "off", "domain" (the host name only: the URL and title never
// leave the browser) or "full" (URL and title), separately for tab reports and for pages the
// browser refused by policy. Until the agent has answered, nothing is sent.
//
// It reads no page content, injects no scripts and records no input: it uses only the tabs,
// windows and webNavigation events the browser already exposes.
"use strict";

const HOST = "com.glasshouse.agent";
const MODES = ["off", "domain", "full"];
const BLOCKED = "net::ERR_BLOCKED_BY_ADMINISTRATOR";
const MAX_PENDING = 20;

let port = null;
let config = { tabs: "off", blocks: "off" };
let configured = false; // has the agent answered on this connection?
let lastReport = null; // the last tab report sent, to skip repeats (the agent repeats it itself)
let retryDelay = 1000;
let retryTimer = null;
let pendingBlocks = []; // refused pages seen before the agent's config arrived (kept in memory only)

function connect() {
  if (port !== null) return;
  try {
    port = chrome.runtime.connectNative(HOST);
  } catch (e) {
    port = null;
    scheduleRetry();
    return;
  }
  configured = false;
  port.onMessage.addListener(onAgentMessage);
  port.onDisconnect.addListener(() => {
    void chrome.runtime.lastError; // "host not found" or "host exited": try again later
    port = null;
    config = { tabs: "off", blocks: "off" };
    configured = false;
    lastReport = null;
    scheduleRetry();
  });
}

function scheduleRetry() {
  if (retryTimer !== null) return;
  retryTimer = setTimeout(() => {
    retryTimer = null;
    connect();
  }, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 60000);
}

function send(message) {
  if (port === null) return;
  try {
    port.postMessage(message);
  } catch (e) {
    // The port closed; onDisconnect reconnects.
  }
}

function onAgentMessage(message) {
  if (!message || message.type !== "config") return;
  retryDelay = 1000;
  config = {
    tabs: MODES.includes(message.tabs) ? message.tabs : "off",
    blocks: MODES.includes(message.blocks) ? message.blocks : "off",
  };
  configured = true;
  lastReport = null;
  const blocks = pendingBlocks;
  pendingBlocks = [];
  for (const url of blocks) reportBlocked(url);
  reportActiveTab();
}

function hostOf(url) {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === "http:" || parsed.protocol === "https:") return parsed.hostname;
  } catch (e) {
    // not a URL
  }
  return null;
}

function describe(tab) {
  const url = tab && tab.url ? tab.url : "";
  const domain = hostOf(url);
  if (domain === null) return { type: "tab" }; // no web page in front
  if (config.tabs === "full") return { type: "tab", url: url, title: tab.title || "" };
  return { type: "tab", domain: domain };
}

function report(message) {
  if (!configured || config.tabs === "off") return;
  const key = JSON.stringify(message);
  if (key === lastReport) return;
  lastReport = key;
  send(message);
}

async function reportActiveTab() {
  if (!configured || config.tabs === "off") return;
  let tab = null;
  try {
    const tabs = await chrome.tabs.query({ active: true, lastFocusedWindow: true });
    tab = tabs.length > 0 ? tabs[0] : null;
  } catch (e) {
    tab = null;
  }
  report(describe(tab));
}

function reportBlocked(url) {
  if (!configured) {
    if (pendingBlocks.length < MAX_PENDING) pendingBlocks.push(url);
    connect();
    return;
  }
  if (config.blocks === "off") return;
  const domain = hostOf(url);
  if (domain === null) return;
  send(config.blocks === "full" ? { type: "blocked", url: url } : { type: "blocked", domain: domain });
}

// Listeners are registered at the top level so that the browser wakes the worker for them.
chrome.tabs.onActivated.addListener(() => {
  connect();
  reportActiveTab();
});

chrome.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (!tab.active || !(change.url || change.title || change.status === "complete")) return;
  connect();
  reportActiveTab();
});

chrome.windows.onFocusChanged.addListener((windowId) => {
  connect();
  if (windowId === chrome.windows.WINDOW_ID_NONE) {
    report({ type: "tab" }); // the browser lost the focus: no site is in front
  } else {
    reportActiveTab();
  }
});

chrome.webNavigation.onErrorOccurred.addListener((details) => {
  if (details.frameId !== 0 || details.error !== BLOCKED) return;
  reportBlocked(details.url);
});

chrome.runtime.onStartup.addListener(connect);
chrome.runtime.onInstalled.addListener(connect);
connect();
