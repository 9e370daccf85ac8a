// The payment page's live status (a file of its own: the Content-Security-Policy allows no inline script).
  // Poll the status until the payment is done; rebuild the rows from the JSON (text only, never HTML).
  (function () {
    const script = document.currentScript;
    const url = script.dataset.statusUrl;
    function cell(text, cls) { const span = document.createElement("span"); span.textContent = text; if (cls) span.className = cls; return span; }
    function render(p) {
      const badge = document.getElementById("payment-status");
      badge.textContent = p.status; badge.className = "status " + p.status;
      for (const o of p.payment_orders) {
        const row = document.querySelector('tr[data-order="' + CSS.escape(o.payment_order_id) + '"]');
        if (!row) continue;
        const td = row.cells[3]; td.replaceChildren(cell(o.status, "status " + o.status));
        if (o.failure_code) { const d = document.createElement("div"); d.className = "muted failure"; d.textContent = o.failure_code; td.append(d); }
        if (o.next_action_url) { const d = document.createElement("div"); const a = document.createElement("a"); a.href = o.next_action_url; a.target = "_blank"; a.rel = "noopener"; a.textContent = "Confirm with your bank"; d.append(a); td.append(d); }
      }
      return p.status !== "IN_PROGRESS";
    }
    async function poll() {
      try {
        const response = await fetch(url, {headers: {"Accept": "application/json"}});
        if (response.ok && render(await response.json())) return;
      } catch (e) { /* the network blinked: try again */ }
      setTimeout(poll, 1000);
    }
    if (script.dataset.status === "IN_PROGRESS") setTimeout(poll, 500);
  })();
