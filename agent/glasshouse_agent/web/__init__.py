"""Browser capture and web filtering (docs/agent-protocol.md, "Device control, file tracking,
browser and app blocking").

- `rules`: the policy's `web` section, parsed strictly; which rules are in force at a moment.
- `writer`: managed browser policy files (Chromium, Google Chrome, Firefox) for the rules in
  force, and removal of exactly what was written.
- `control`: the service's side: re-evaluates the rules at schedule boundaries, and turns a
  browser's report of a refused page into a `web_block` event.
- `host`: the native messaging host the browser starts for the extension (browser-extension/);
  it forwards tab changes to the service over the session socket.
- `install`: `glasshouse-agent browser-install`: host manifests and the force-install policy.
"""

# The native messaging host's name, as the extension calls it (chrome.runtime.connectNative).
HOST_NAME = "com.glasshouse.agent"
