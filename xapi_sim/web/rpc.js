// JSON-RPC to XAPI endpoints (POST /jsonrpc), as any client of the real API does.
// Bodies go as text/plain so that a call to another host's endpoint is a "simple" CORS
// request (the endpoints answer with access-control-allow-origin: *).

export class XapiError extends Error {
  constructor(description) {
    super(description.join(" "));
    this.description = description;
    this.code = description[0];
  }
}

let nextId = 1;

export async function call(url, method, params, timeoutMs = 30000) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  let reply;
  try {
    const r = await fetch(url + "jsonrpc", {
      method: "POST",
      body: JSON.stringify({ jsonrpc: "2.0", method, params, id: nextId++ }),
      signal: ctl.signal,
      cache: "no-store",
    });
    if (!r.ok) throw new XapiError([`HTTP_${r.status}`, url]);
    reply = await r.json();
  } catch (e) {
    if (e instanceof XapiError) throw e;
    // connection refused, reset, timed out: the host is not answering
    throw new XapiError(["HOST_UNREACHABLE", url, String(e.message || e)]);
  } finally {
    clearTimeout(timer);
  }
  if (reply.error) {
    const err = reply.error;
    throw new XapiError([err.message, ...(err.data || [])]);
  }
  return reply.result;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
