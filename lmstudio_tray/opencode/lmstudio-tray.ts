/**
 * lmstudio-tray plugin for OpenCode (written against opencode-ai 1.18.33).
 *
 * Asks the lmstudio-tray endpoint (loopback, token from its endpoint.json) before every LLM request to an
 * LM Studio provider, and stops requests LM Studio would fail with one clear, actionable error instead of
 * OpenCode's endless retries. Also forwards session events, applies the tray's transforms and registers
 * the lmstudio_* tools. When the tray is not running, everything here steps aside (fail open).
 *
 * Dependency-free on purpose: OpenCode's npm install of plugin dependencies can stall for a minute
 * offline, so only `import type` (erased by Bun) and the few Bun/Web APIs declared below are used.
 * Install with `lmstudio-tray opencode install`.
 */
import type { Hooks, Plugin, PluginInput } from "@opencode-ai/plugin"

// The parts of Bun's runtime used here; declared locally so the file type-checks without bun-types.
type BunSocket = { write(data: string): number; end(): void }
type BunSocketHandler = {
  data(socket: BunSocket, data: Uint8Array): void
  close(socket: BunSocket): void
  error(socket: BunSocket, error: Error): void
  connectError(socket: BunSocket, error: Error): void
}
declare const Bun: {
  file(path: string): { text(): Promise<string>; exists(): Promise<boolean> }
  connect(options: { hostname: string; port: number; socket: BunSocketHandler }): Promise<BunSocket>
}
declare const process: { env: Record<string, string | undefined>; platform: string }

type Json = Record<string, unknown>
type Toast = { title: string; message: string; variant: "info" | "success" | "warning" | "error"; duration: number }
type Endpoint = { url: string; token: string; pid?: number }
// contexts: limit.context per model id, as opencode.json configures them
type ProviderInfo = { id: string; baseURL?: string; contexts: Record<string, number> }
type SessionInfo = { providerID: string; baseURL?: string; model: string; contextLimit?: number }
type PluginSettings = {
  hook_timeout_ms: number
  ensure_timeout_ms: number
  instances: { name: string; url: string }[]
  toasts: { enabled: boolean; quiet: boolean; categories: Record<string, boolean> }
}
type Verdict = {
  ok: boolean
  category: string
  action: "allow" | "warn" | "block" | "ensure"
  model: string
  message: string
  text: string
  retry_after_ms: number | null
  facts: { instance: string | null; model_key: string | null; eta_seconds: number | null; loaded_context_length: number | null; loaded_models?: string[] }
}
type LoadProgress = { model: string; progress: number | null; eta_seconds: number | null }
type DownloadProgress = { instance: string; model: string; job_id: string; fraction: number | null; total_bytes: number | null; bytes_per_second: number | null; paused: boolean }
type StatusReport = { instances?: { name: string; loads?: LoadProgress[]; models?: { key: string }[] }[]; downloads?: DownloadProgress[] }

const SERVICE = "lmstudio-tray"
const DEFAULT_SETTINGS: PluginSettings = {
  hook_timeout_ms: 800,
  ensure_timeout_ms: 120_000,
  instances: [],
  toasts: { enabled: true, quiet: false, categories: {} },
}
// OpenCode's hidden agents that run on small_model (1.18.33), not on the session's own model.
const HELPER_AGENTS = new Set(["title", "summary"])
const FORWARDED_EVENTS = new Set(["session.status", "session.error", "session.idle", "message.updated", "session.compacted"])
// Transforms are nice-to-have: they must never hold up a turn for long.
const TRANSFORM_TIMEOUT_MS = 400
const SETTINGS_TTL_MS = 30_000
// While a request waits for a load, the loading toast is refreshed from the tray's status this often.
const PROGRESS_MS = 1_000
const ENDPOINT_RETRY_MS = 2_000
// A download the download tool started is followed in a toast, from the tray's status, this often.
const DOWNLOAD_PROGRESS_MS = 3_000
// A benchmark loads the model if needed and runs the quick suite several times: minutes on a big model.
const BENCH_TIMEOUT_MS = 600_000

// OpenCode retries a failed request (1.18: up to 5 times, about a minute) when the error's message looks
// transient, and it applies that to an error a plugin throws to stop the request too. Its patterns match
// status codes anywhere in the text (a port like 45003 has "500"), "connection refused", "server error",
// "timed out", "unavailable", ... (SessionRetry in opencode 1.18.33; the list below mirrors it). A verdict
// often says such words, so the thrown text gets an invisible word joiner inside every match: it reads
// the same and OpenCode gives up at once, which is the point of blocking.
const OPENCODE_RETRY_PATTERNS: RegExp[] = [
  /429|500|502|503|504|524/gi,
  /rate increased too quickly|rate limit|rate-limit|rate_limit|too many requests|too_many_requests/gi,
  /overloaded|unavailable|exhausted|internal error|internal_error|server error|server_error|server-error|provider returned error|provider_returned_error|provider-returned-error/gi,
  /terminated|fetch failed|failed to fetch|network[-_\s]error|upstream connect|connection error|connection refused|connection lost|socket connection was closed|socket hang up|reset before headers|getaddrinfo|enotfound|eai_again|econnrefused|econnreset|etimedout/gi,
  /timeout|timed out|time out/gi,
  /try your request again|retry your request|try again/gi,
  /at capacity/gi,
]
const WORD_JOINER = "\u2060"

/** `text` as OpenCode shows it, but matching none of its retry patterns (see above). */
function withoutRetryWords(text: string): string {
  let out = text
  for (let pass = 0; pass < 4; pass++) {
    const before = out
    for (const pattern of OPENCODE_RETRY_PATTERNS) {
      out = out.replace(pattern, (m) => m.slice(0, 1) + WORD_JOINER + m.slice(1))
    }
    if (out === before) break
  }
  return out
}

function stateDir(): string {
  const env = process.env
  const home = env.HOME ?? env.USERPROFILE ?? ""
  // Must match platformdirs.user_state_dir("lmstudio-tray", appauthor=False) on the Python side.
  if (process.platform === "win32") return `${env.LOCALAPPDATA ?? `${home}\\AppData\\Local`}\\lmstudio-tray`
  if (process.platform === "darwin") return `${home}/Library/Application Support/lmstudio-tray`
  return `${env.XDG_STATE_HOME || `${home}/.local/state`}/lmstudio-tray`
}

function endpointFile(options: Json | undefined): string {
  const fromOptions = options?.endpointFile
  if (typeof fromOptions === "string" && fromOptions) return fromOptions
  const fromEnv = process.env.LMSTUDIO_TRAY_ENDPOINT_FILE
  if (fromEnv) return fromEnv
  const sep = process.platform === "win32" ? "\\" : "/"
  return `${stateDir()}${sep}endpoint.json`
}

function normalizeUrl(url: string | undefined): string | undefined {
  if (!url) return undefined
  let u = url.trim().replace(/\/+$/, "")
  if (u.endsWith("/v1")) u = u.slice(0, -3)
  return u.replace("://localhost:", "://127.0.0.1:")
}

function asRecord(value: unknown): Json | undefined {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Json) : undefined
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** "Loading <model> 40%, about 3 s left…" from whatever the tray knows of the load. */
function loadingText(model: string, progress: number | null | undefined, eta: number | null | undefined): string {
  const pct = typeof progress === "number" ? ` ${Math.round(progress * 100)}%` : ""
  const left = typeof eta === "number" ? `${pct ? "," : ""} about ${Math.max(1, Math.round(eta))} s left` : ""
  return `Loading ${model}${pct}${left}…`
}

/** "Downloading <model> 45% of 2.3 GB, 250 MB/s" from the tray's status of a download. */
function downloadingText(d: DownloadProgress): string {
  const gb = typeof d.total_bytes === "number" ? ` of ${(d.total_bytes / 1e9).toFixed(1)} GB` : ""
  const pct = typeof d.fraction === "number" ? ` ${Math.round(d.fraction * 100)}%${gb}` : ""
  const speed = d.paused ? ", paused in LM Studio" : typeof d.bytes_per_second === "number" ? `, ${Math.round(d.bytes_per_second / 1e6)} MB/s` : ""
  return `Downloading ${d.model}${pct}${speed}`
}

type LoopbackResponse = { status: number; text: string }

/**
 * One HTTP/1.1 request to the tray's loopback endpoint over a plain TCP connection.
 *
 * Not `fetch`: Bun's fetch (and its node:http) send even http://127.0.0.1 through HTTP_PROXY/HTTPS_PROXY
 * when those are set, with no way to ask for a direct connection, so the endpoint's bearer token would
 * travel to the proxy. The endpoint answers small JSON bodies and closes after `connection: close`.
 */
async function loopbackRequest(url: string, method: string, headers: Record<string, string>,
                               body: string | undefined, signal: AbortSignal): Promise<LoopbackResponse> {
  const target = new URL(url)
  const text = body ?? ""
  const head = [`${method} ${target.pathname}${target.search} HTTP/1.1`, `host: ${target.host}`,
    "connection: close", `content-length: ${new TextEncoder().encode(text).length}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join("\r\n")
  signal.throwIfAborted()
  const chunks: Uint8Array[] = []
  let socket: BunSocket | undefined
  const received = new Promise<Uint8Array>((resolve, reject) => {
    const fail = (error: unknown) => reject(error instanceof Error ? error : new Error(String(error)))
    signal.addEventListener("abort", () => {
      socket?.end()
      fail(signal.reason)
    }, { once: true })
    Bun.connect({
      hostname: target.hostname.replace(/^\[|\]$/g, ""),
      port: Number(target.port || 80),
      socket: {
        data(_s, data) { chunks.push(new Uint8Array(data)) },
        close() { resolve(concat(chunks)) },
        error(_s, error) { fail(error) },
        connectError(_s, error) { fail(error) },
      },
    }).then((s) => {
      socket = s
      if (signal.aborted) return s.end()
      s.write(`${head}\r\n\r\n${text}`)
    }, fail)
  })
  return parseResponse(await received)
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    all.set(p, at)
    at += p.length
  }
  return all
}

/** Status and body of a whole HTTP/1.1 response (a body of known length, to the close, or chunked). */
function parseResponse(raw: Uint8Array): LoopbackResponse {
  let split = -1
  for (let i = 0; i + 3 < raw.length; i++) {
    if (raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10) {
      split = i
      break
    }
  }
  if (split < 0) throw new Error("lmstudio-tray closed the connection before answering")
  const decoder = new TextDecoder()
  const [statusLine, ...headerLines] = decoder.decode(raw.subarray(0, split)).split("\r\n")
  const status = Number(statusLine.split(" ")[1])
  if (!Number.isInteger(status)) throw new Error(`lmstudio-tray sent no HTTP status (${statusLine.slice(0, 40)})`)
  let rest = raw.subarray(split + 4)
  if (!headerLines.some((h) => /^transfer-encoding:\s*chunked/i.test(h))) return { status, text: decoder.decode(rest) }
  const parts: Uint8Array[] = []
  for (;;) {
    let eol = 0
    while (eol + 1 < rest.length && !(rest[eol] === 13 && rest[eol + 1] === 10)) eol++
    const size = parseInt(decoder.decode(rest.subarray(0, eol)), 16)
    if (!(size > 0)) return { status, text: decoder.decode(concat(parts)) }
    parts.push(rest.subarray(eol + 2, eol + 2 + size))
    rest = rest.subarray(eol + 2 + size + 2)
  }
}

class TrayClient {
  private endpoint: Endpoint | undefined
  private lastRead = 0
  private settings: PluginSettings = DEFAULT_SETTINGS
  private settingsAt = 0
  private settingsKnown = false
  private settingsFetch: Promise<PluginSettings> | undefined

  constructor(private readonly file: string) {}

  private async load(force: boolean): Promise<Endpoint | undefined> {
    const now = Date.now()
    if (this.endpoint && !force) return this.endpoint
    if (!force && now - this.lastRead < ENDPOINT_RETRY_MS) return this.endpoint
    this.lastRead = now
    try {
      const f = Bun.file(this.file)
      if (!(await f.exists())) {
        this.endpoint = undefined
        return undefined
      }
      const data = asRecord(JSON.parse(await f.text()))
      const url = str(data?.url)
      const token = str(data?.token)
      this.endpoint = url && token ? { url: url.replace(/\/+$/, ""), token } : undefined
    } catch {
      this.endpoint = undefined
    }
    return this.endpoint
  }

  /** POST/GET to the tray. Throws on network failure, timeout or a non-2xx answer (message included). */
  async call<T>(path: string, body: Json | undefined, timeoutMs: number, signal?: AbortSignal): Promise<T> {
    let ep = await this.load(false)
    for (let attempt = 0; attempt < 2; attempt++) {
      if (!ep) throw new Error(`lmstudio-tray is not running (no ${this.file})`)
      const signals = [AbortSignal.timeout(timeoutMs)]
      if (signal) signals.push(signal)
      let res: LoopbackResponse
      try {
        res = await loopbackRequest(ep.url + path, body === undefined ? "GET" : "POST",
          { authorization: `Bearer ${ep.token}`, "content-type": "application/json" },
          body === undefined ? undefined : JSON.stringify(body), AbortSignal.any(signals))
      } catch (err) {
        // The tray may have restarted on another port: read the file again once.
        const fresh = attempt === 0 ? await this.load(true) : undefined
        if (fresh && (fresh.url !== ep.url || fresh.token !== ep.token)) {
          ep = fresh
          continue
        }
        throw err
      }
      if (res.status === 401 && attempt === 0) {
        const fresh = await this.load(true)
        if (fresh && fresh.token !== ep.token) {
          ep = fresh
          continue
        }
      }
      let data: Json = {}
      try {
        data = asRecord(JSON.parse(res.text)) ?? {}
      } catch {
        // not JSON: the status says enough
      }
      if (res.status < 200 || res.status >= 300) {
        const error = asRecord(data.error)
        throw new Error(str(error?.message) ?? str(data.detail) ?? `lmstudio-tray answered HTTP ${res.status}`)
      }
      return data as T
    }
    throw new Error("lmstudio-tray is not reachable")
  }

  /** The endpoint's address and token as endpoint.json says now (re-read: the token changes per start). */
  async endpointInfo(): Promise<Endpoint | undefined> {
    return this.load(true)
  }

  /** The tray's settings for the plugin, fetched again after their TTL; a hook does not wait for a fetch under way
   * (the last known settings, or the defaults, stand in). `untilKnown`: for a caller that can wait, settings never
   * fetched are fetched now, even right after a failed try (which a busy machine's first fetch, at plugin start,
   * can be). */
  async pluginSettings(timeoutMs = 500, untilKnown = false): Promise<PluginSettings> {
    if (untilKnown) while (this.settingsFetch) await this.settingsFetch
    else if (this.settingsFetch) return this.settings
    const now = Date.now()
    // settings never fetched are tried again sooner: until then the defaults (every toast on) stand in for them
    const fresh = now - this.settingsAt < (this.settingsKnown ? SETTINGS_TTL_MS : ENDPOINT_RETRY_MS)
    if (untilKnown ? this.settingsKnown : fresh) return this.settings
    this.settingsAt = now
    this.settingsFetch = this.fetchSettings(timeoutMs).finally(() => { this.settingsFetch = undefined })
    return this.settingsFetch
  }

  private async fetchSettings(timeoutMs: number): Promise<PluginSettings> {
    try {
      this.settings = { ...DEFAULT_SETTINGS, ...(await this.call<PluginSettings>("/v1/plugin", undefined, timeoutMs)) }
      this.settingsKnown = true
    } catch {
      // keep the last known settings; the next hook tries again after the TTL
    }
    return this.settings
  }

  /** The settings as last fetched, and whether they were fetched at all (false: the defaults). */
  cachedSettings(): PluginSettings {
    return this.settings
  }

  hasSettings(): boolean {
    return this.settingsKnown
  }
}

export const LMStudioTrayPlugin: Plugin = async (ctx: PluginInput, options?: Json): Promise<Hooks> => {
  const tray = new TrayClient(endpointFile(options))
  const providers = new Map<string, ProviderInfo>()
  const sessions = new Map<string, SessionInfo>()
  const shown = new Set<string>()

  const log = (level: "debug" | "info" | "warn" | "error", message: string, extra?: Json): void => {
    ctx.client.app.log({ body: { service: SERVICE, level, message, extra } }).catch(() => undefined)
  }

  const toast = async (category: string, t: Toast, onceKey?: string): Promise<void> => {
    if (onceKey) {
      if (shown.has(onceKey)) return
      shown.add(onceKey)
      if (shown.size > 5000) shown.clear()
    }
    const prefs = tray.cachedSettings().toasts
    if (!prefs.enabled || prefs.categories[category] === false) return
    if (prefs.quiet && t.variant !== "error") return
    try {
      // duration must be > 0: OpenCode answers 400 to 0
      await ctx.client.tui.showToast({ body: { ...t, duration: Math.max(1, t.duration) } })
    } catch {
      // no TUI attached, or an older OpenCode: toasts are best effort
    }
  }

  const isLmStudio = (providerID: string | undefined, baseURL: string | undefined): boolean => {
    if (providerID && providerID.toLowerCase().includes("lmstudio")) return true
    const url = normalizeUrl(baseURL)
    return !!url && tray.cachedSettings().instances.some((i) => normalizeUrl(i.url) === url)
  }

  const providerFor = (providerID: string | undefined): ProviderInfo | undefined =>
    providerID ? providers.get(providerID) : undefined

  const sessionFor = (sessionID: string | undefined): SessionInfo | undefined =>
    sessionID ? sessions.get(sessionID) : undefined

  const forward = (event: Json): void => {
    const type = str(event.type)
    if (!type || !FORWARDED_EVENTS.has(type)) return
    const props = asRecord(event.properties) ?? {}
    if (type === "message.updated") {
      // Only finished or failed assistant messages matter; skipping the rest keeps traffic low.
      const info = asRecord(props.info)
      const time = asRecord(info?.time)
      if (info?.role !== "assistant" || !(time?.completed || info?.error)) return
    }
    if (type === "session.status" && asRecord(props.status)?.type === "busy") return
    const info = asRecord(props.info)
    const sessionID = str(props.sessionID) ?? str(info?.sessionID)
    const s = sessionFor(sessionID)
    const providerID = str(info?.providerID) ?? s?.providerID
    const baseURL = providerFor(providerID)?.baseURL ?? s?.baseURL
    const model = str(info?.modelID) ?? s?.model
    if (!isLmStudio(providerID, baseURL) && !(type === "session.error" && s)) return
    tray
      .call("/v1/events", { events: [{ type, properties: props, base_url: baseURL, provider_id: providerID, model, time: Date.now() }] }, 1000)
      .catch(() => undefined)
  }

  // One progress loop per load however many requests wait for it (the answer, the title, other sessions).
  const watchers = new Map<string, { waiting: number }>()

  /** Refresh the one loading toast from the tray's status (LM Studio's own progress where it reports it) until the
   * returned function has been called. OpenCode's TUI shows one toast at a time and a new one replaces it in place,
   * so each refresh updates the same toast. `instance` null: the load of `key` on whichever instance runs it. */
  const watchLoad = (instance: string | null, key: string, model: string): (() => void) => {
    const id = `${instance ?? "*"}\n${key}`
    let entry = watchers.get(id)
    if (entry) entry.waiting++
    else {
      const mine = { waiting: 1 }
      entry = mine
      watchers.set(id, mine)
      void (async () => {
        let last = ""
        while (watchers.get(id) === mine) {
          await sleep(PROGRESS_MS)
          try {
            const status = await tray.call<StatusReport>("/v1/status", undefined, 500)
            const load = status.instances?.filter((i) => instance === null || i.name === instance)
              .flatMap((i) => i.loads ?? []).find((l) => l.model === key)
            const message = load ? loadingText(model, load.progress, load.eta_seconds) : last
            if (message === last || watchers.get(id) !== mine) continue
            last = message
            await toast("loading", { title: "LM Studio", message, variant: "info", duration: 3 * PROGRESS_MS })
          } catch {
            // progress is a courtesy: the ensure call itself decides
          }
        }
      })()
    }
    const counted = entry
    return () => {
      if (--counted.waiting <= 0 && watchers.get(id) === counted) watchers.delete(id)
    }
  }

  // One toast loop per download, however often the tool is called for it.
  const downloadWatchers = new Set<string>()

  /** Toast a download's progress from the tray's status until it ends, then toast the model being there. */
  const watchDownload = (instance: string, jobId: string, model: string): void => {
    const id = `${instance}\n${jobId}`
    if (downloadWatchers.has(id)) return
    downloadWatchers.add(id)
    void (async () => {
      let last = ""
      let misses = 0
      try {
        while (misses < 5) {
          await sleep(DOWNLOAD_PROGRESS_MS)
          let status: StatusReport
          try {
            status = await tray.call<StatusReport>("/v1/status", undefined, 1000)
            misses = 0
          } catch {
            misses++
            continue
          }
          const d = status.downloads?.find((x) => x.instance === instance && x.job_id === jobId)
          if (!d) {
            const there = status.instances?.find((i) => i.name === instance)?.models?.some((m) => m.key === model)
            if (there) await toast("downloaded", { title: "LM Studio", message: `${model} downloaded`, variant: "success", duration: 5000 })
            return
          }
          const message = downloadingText(d)
          if (message === last) continue
          last = message
          await toast("downloaded", { title: "LM Studio", message, variant: "info", duration: 2 * DOWNLOAD_PROGRESS_MS })
        }
      } finally {
        downloadWatchers.delete(id)
      }
    })()
  }

  // Once per session, when the plugin first reaches the tray: what it found. Not awaited (the request goes on); the
  // settings are fetched first when they never were, so a person who turned this toast off does not see it.
  const connectedSessions = new Set<string>()
  const connected = async (sessionID: string, v: Verdict): Promise<void> => {
    if (connectedSessions.has(sessionID)) return
    connectedSessions.add(sessionID)
    // not awaited by the request, so it may take its time: a first fetch that timed out on a busy machine is
    // tried again now instead of leaving the instance count out
    const settings = await tray.pluginSettings(5000, true)
    const n = settings.instances.length
    // without its settings the plugin does not know how many instances the tray monitors: it says nothing of them
    const count = tray.hasSettings() ? `${n} instance${n === 1 ? "" : "s"}; ` : ""
    const loaded = v.facts.loaded_models ?? []
    const what = loaded.length ? `${loaded.join(", ")} loaded` : "no model loaded"
    await toast("connected", { title: "lmstudio-tray connected", message: `${count}${what}${v.facts.instance ? ` on ${v.facts.instance}` : ""}`, variant: "success", duration: 4000 })
  }

  const validate = async (sessionID: string, agent: string, model: string, baseURL: string | undefined, contextLimit: number | undefined): Promise<void> => {
    const settings = await tray.pluginSettings()
    let v: Verdict
    try {
      v = await tray.call<Verdict>(
        "/v1/validate",
        { model, base_url: baseURL, context_limit: contextLimit, agent, session_id: sessionID },
        settings.hook_timeout_ms,
      )
    } catch (err) {
      log("warn", `validate failed, letting the request through: ${errorText(err)}`)
      await toast(
        "offline",
        {
          title: "lmstudio-tray not reachable",
          message: `Requests to LM Studio go out unchecked (${errorText(err)}). Start it with \`lmstudio-tray serve\` or the tray app.`,
          variant: "warning",
          duration: 6000,
        },
        `unreachable:${sessionID}`,
      )
      return
    }
    const once = `${sessionID}:${v.category}:${model}`
    // on the session's own request (a title's comes first, while the TUI is still opening the session)
    if (!HELPER_AGENTS.has(agent)) void connected(sessionID, v)
    if (v.action === "block") {
      await toast(v.category === "offline" ? "offline" : v.category === "auth_failed" ? "auth" : "load_failed", { title: "LM Studio", message: v.message, variant: "error", duration: 10_000 })
      throw new Error(withoutRetryWords(v.text))
    }
    if (v.action === "ensure") {
      // `loading`: another request, the tray or a tool is loading it; the tray waits for that load
      const eta = v.facts.eta_seconds
      const first = v.category === "loading" ? `Waiting for ${model} to finish loading${eta ? ` (about ${Math.round(eta)} s)` : ""}…` : `Loading ${model}${eta ? ` (about ${Math.round(eta)} s)` : ""}…`
      await toast("loading", { title: "LM Studio", message: first, variant: "info", duration: Math.max(3000, (eta ?? 3) * 1000) }, `ensure:${once}`)
      const stopWatching = watchLoad(v.facts.instance, v.facts.model_key ?? model, model)
      let result: { ok: boolean; message: string; text: string; category_now?: string; seconds?: number }
      try {
        result = await tray.call("/v1/ensure", { model, base_url: baseURL, context_limit: contextLimit, session_id: sessionID }, settings.ensure_timeout_ms + 5000)
      } catch (err) {
        result = { ok: false, message: errorText(err), text: `${v.text}\nEnsure failed: ${errorText(err)}` }
      } finally {
        stopWatching()
      }
      if (!result.ok) {
        await toast("load_failed", { title: "LM Studio", message: result.message, variant: "error", duration: 10_000 })
        throw new Error(withoutRetryWords(result.text))
      }
      if (result.category_now && result.category_now !== "ready") {
        // it waited for a load and found the model usable but not as planned (e.g. a smaller context)
        await toast("session", { title: "LM Studio", message: result.message, variant: "warning", duration: 8000 }, `ensured:${once}`)
        return
      }
      await toast("loaded", { title: "LM Studio", message: result.message, variant: "success", duration: 4000 }, `ensured:${once}`)
      return
    }
    if (v.action === "warn") {
      await toast(v.category === "context_too_small" ? "session" : "loading", { title: "LM Studio", message: v.message, variant: "warning", duration: 8000 }, `warn:${once}`)
    } else if (v.category === "jit" || v.category === "loading") {
      await toast("loading", { title: "LM Studio", message: v.message, variant: "info", duration: Math.max(3000, (v.retry_after_ms ?? 3000)) }, `info:${once}`)
    }
  }

  type ToolArgs = Record<string, unknown>
  type ToolContextLike = { sessionID: string; abort: AbortSignal }
  type Prop = { type: string; description: string; items?: { type: string }; enum?: string[] }

  // A tool that could take the model away from its own session (unload, switch, server stop) names the
  // session and its model: the tray keeps that model, or refuses, and says how the person switches (/models).
  type ToolAnswer = { text?: string; instance?: string; data?: unknown }
  const toolCall = (path: string, props: Record<string, Prop>, timeoutMs: number, aboutSession: boolean, onAnswer?: (res: ToolAnswer) => void) => async (args: ToolArgs, context: ToolContextLike): Promise<string> => {
    const s = sessionFor(context.sessionID)
    const body: Json = { base_url: s?.baseURL }
    // only the arguments the tool declares (every tool declares `instance`): whatever else a model invents
    // (force, base_url) stays out
    for (const key of Object.keys(props)) {
      // Models fill every argument they are shown; empty values mean "not given" (false too: a search filter
      // filled with false would hide every model that has the capability)
      const value = args[key]
      if (value !== undefined && value !== "" && value !== 0 && value !== null && value !== false) body[key] = value
    }
    if (aboutSession) {
      body.session_id = context.sessionID
      body.session_model = s?.model
    }
    // a load tool shows the load's progress in the one loading toast while it runs
    const watching = path === "/v1/tools/load" ? [body.model, ...(Array.isArray(body.models) ? body.models : [])]
      .filter((m): m is string => typeof m === "string").map((m) => watchLoad(null, m, m)) : []
    try {
      const res = await tray.call<ToolAnswer>(path, body, timeoutMs, context.abort)
      onAnswer?.(res)
      return res.text ?? JSON.stringify(res)
    } catch (err) {
      return `lmstudio-tray: ${errorText(err)}`
    } finally {
      for (const stop of watching) stop()
    }
  }

  // Every tool can act on another instance than the session's, by its name in lmstudio-tray's config.
  const instanceProp: Prop = { type: "string", description: "LM Studio instance, by its name in lmstudio-tray's config (optional; default: the one this session uses)" }
  const defineTool = (description: string, props: Record<string, Prop>, required: string[], path: string, timeoutMs = 15_000, aboutSession = false, onAnswer?: (res: ToolAnswer) => void) => ({
    description,
    args: { ...props, instance: instanceProp },
    required,
    execute: toolCall(path, { ...props, instance: instanceProp }, timeoutMs, aboutSession, onAnswer),
  })

  // A download the tool started (or follows) gets a progress toast, the way a load does.
  const onDownload = (res: ToolAnswer): void => {
    const data = asRecord(res.data)
    const jobId = str(data?.job_id)
    const model = str(data?.model)
    if (res.instance && jobId && model && data?.status === "downloading") watchDownload(res.instance, jobId, model)
  }

  const loadTimeout = (): number => tray.cachedSettings().ensure_timeout_ms + 5000
  const modelProp: Prop = { type: "string", description: "LM Studio model key, e.g. qwen/qwen3-4b-2507" }
  const modelsProp: Prop = { type: "array", items: { type: "string" }, description: "Several model keys (batch form)" }
  const ctxProp: Prop = { type: "integer", description: "Context length in tokens (optional)" }
  // what `lmstudio-tray load` takes; GPU offload, parallel and identifier need LM Studio on this machine (`lms`)
  const loadOptionProps: Record<string, Prop> = {
    gpu: { type: "string", description: "GPU offload: off, max or a ratio between 0 and 1 (optional)" },
    ttl: { type: "integer", description: "Unload after this many seconds without requests (optional)" },
    parallel: { type: "integer", description: "Requests the loaded model serves at once (optional)" },
    identifier: { type: "string", description: "Name of the loaded copy in the API; one model only (optional)" },
  }
  const tools = {
    lmstudio_list_models: defineTool("List the models LM Studio has downloaded and which are loaded, with their context lengths.", {}, [], "/v1/tools/list"),
    lmstudio_load_model: defineTool("Load a model (or several) into LM Studio so requests to it do not fail. Before a load on this machine LM Studio's memory estimate is checked: the answer says when it will not fit.", { model: modelProp, models: modelsProp, context_length: ctxProp, ...loadOptionProps }, [], "/v1/tools/load", loadTimeout()),
    lmstudio_unload_model: defineTool("Unload a model (or several, or all with all=true) from LM Studio to free memory. The model this session runs on stays loaded.", { model: modelProp, models: modelsProp, all: { type: "boolean", description: "Unload every loaded model" } }, [], "/v1/tools/unload", 15_000, true),
    lmstudio_switch_model: defineTool("Load a model and unload the other chat models, except the one this session runs on (only the person switches this session's model, with /models).", { model: modelProp, context_length: ctxProp }, ["model"], "/v1/tools/switch", loadTimeout(), true),
    lmstudio_server_start: defineTool("Start LM Studio's HTTP server.", {}, [], "/v1/tools/server/start", 30_000),
    lmstudio_server_stop: defineTool("Stop LM Studio's HTTP server (not the one this session runs on).", {}, [], "/v1/tools/server/stop", 30_000, true),
    lmstudio_server_status: defineTool("Tell whether LM Studio's server is running, what is loaded and (on this machine) its settings: who may connect, CORS, JIT loading, whether API tokens are required.", {}, [], "/v1/tools/server/status"),
    lmstudio_search_models: defineTool("Search the downloaded LM Studio models by name and specs, ranked by name match, then by how often each was used.", {
      query: { type: "string", description: "Part of a model name (optional; empty: every model that passes the filters)" },
      type: { type: "string", enum: ["llm", "embedding"], description: "llm (vision models included) or embedding (optional)" },
      vision: { type: "boolean", description: "true: only models that take images (optional)" },
      tool_use: { type: "boolean", description: "true: only models trained for tool use (optional)" },
      min_size: { type: "string", description: "Smallest file size, e.g. 2GB (optional)" },
      max_size: { type: "string", description: "Largest file size, e.g. 8GB (optional)" },
      min_context: { type: "string", description: "Smallest max context length, e.g. 32768 or 32k (optional)" },
    }, [], "/v1/tools/search"),
    lmstudio_benchmark: defineTool("Benchmark one model on LM Studio with lmstudio-tray's quick suite (a short and a long prompt, 3 runs): time to first token, prompt and generated tokens/s, load time. Only when the person asks for it: it takes from under a minute to several minutes (up to 10), loads the model if needed and puts back what was loaded afterwards. The result is kept for lmstudio_stats and lmstudio_compare. One benchmark at a time on a machine.", { model: { type: "string", description: "LM Studio model key (optional; default: the model this session runs on)" } }, [], "/v1/tools/benchmark", BENCH_TIMEOUT_MS, true),
    lmstudio_recommend: defineTool("Recommend downloaded models for a task, ranked by their specs and by what was measured here (success rate, tokens/s, use), each with its reasons.", { task: { type: "string", description: 'What the model is for, e.g. "coding agent" or "read screenshots"' } }, ["task"], "/v1/tools/recommend"),
    lmstudio_compare: defineTool("Compare two or more downloaded models side by side: specs, usage measured through OpenCode (turns, success, tokens/s, latency) and their latest benchmark.", { models: { type: "array", items: { type: "string" }, description: "Two or more model keys (or unambiguous parts of them)" }, since: { type: "string", description: "Window of the usage figures: 7d, 24h, 2w or all (optional; default 30d)" } }, ["models"], "/v1/tools/compare"),
    lmstudio_stats: defineTool("Usage summary of the models from lmstudio-tray's analytics: per model turns, success rate, tokens/s, latency and loads, plus benchmark results.", { since: { type: "string", description: "Time window: 30m, 12h, 7d, 2w or all (optional; default 7d)" } }, [], "/v1/tools/stats"),
    lmstudio_download_model: defineTool("Download a model into LM Studio: only models the person allowed in lmstudio-tray's config (a download is gigabytes). Answers with the job; call it again with the same model to see how far it is.", { model: { type: "string", description: "A catalog name such as ibm/granite-4-micro, or a Hugging Face URL" }, quantization: { type: "string", description: "Quantization to download from a Hugging Face URL, e.g. Q4_K_M (optional)" } }, ["model"], "/v1/tools/download", 45_000, false, onDownload),
  }
  const requiredByTool = new Map<string, string[]>(Object.entries(tools).map(([name, t]) => [name, t.required]))

  // Settle the instance list early so the first hook can tell LM Studio providers apart.
  void tray.pluginSettings()

  return {
    config: async (config) => {
      const provider = asRecord((config as unknown as Json).provider) ?? {}
      for (const [id, value] of Object.entries(provider)) {
        const options = asRecord(asRecord(value)?.options)
        const contexts: Record<string, number> = {}
        for (const [modelID, m] of Object.entries(asRecord(asRecord(value)?.models) ?? {})) {
          const context = asRecord(asRecord(m)?.limit)?.context
          if (typeof context === "number" && context > 0) contexts[modelID] = context
        }
        providers.set(id, { id, baseURL: str(options?.baseURL), contexts })
      }
    },

    event: async ({ event }) => {
      try {
        forward(event as unknown as Json)
      } catch {
        // fire-and-forget: a throw here would only print noise over OpenCode's terminal
      }
    },

    "chat.params": async (input) => {
      // 1.18.33 passes the flat provider object here, not the typed {source, info, options}.
      const p = input.provider as unknown as Json
      const info = asRecord(p.info)
      const providerID = str(info?.id) ?? str(p.id) ?? input.model.providerID
      const baseURL = str(asRecord(p.options)?.baseURL) ?? str(asRecord(info?.options)?.baseURL) ?? providerFor(providerID)?.baseURL
      const model = input.model.api?.id ?? input.model.id
      const contextLimit = input.model.limit?.context || undefined
      if (!isLmStudio(providerID, baseURL)) {
        await tray.pluginSettings()
        if (!isLmStudio(providerID, baseURL)) return
      }
      // A provider pointed at the tray's router (/v1/route/<pool>/v1): the router picks and checks the
      // instance itself, and answers a model loaded nowhere with a clear error.
      if (baseURL?.includes("/v1/route/")) return
      // A title (or summary) runs on small_model: not the model this session runs on, which the tools keep.
      if (!HELPER_AGENTS.has(input.agent)) sessions.set(input.sessionID, { providerID, baseURL, model, contextLimit })
      await validate(input.sessionID, input.agent, model, baseURL, contextLimit)
    },

    "chat.headers": async (input, output) => {
      // The router is behind the endpoint's bearer token. It is read from endpoint.json on every request,
      // so no secret goes into opencode.json and a restarted tray (new token, maybe new port) just works.
      const p = input.provider as unknown as Json
      const baseURL = str(asRecord(p.options)?.baseURL) ?? str(asRecord(asRecord(p.info)?.options)?.baseURL) ?? providerFor(input.model.providerID)?.baseURL
      const url = normalizeUrl(baseURL)
      if (!url?.includes("/v1/route/")) return
      const ep = await tray.endpointInfo()
      // only ever to the tray's own address: never hand the token to another server
      if (ep && url.startsWith(`${normalizeUrl(ep.url)}/v1/route/`)) output.headers.Authorization = `Bearer ${ep.token}`
    },

    "experimental.chat.system.transform": async (input, output) => {
      try {
        const providerID = input.model.providerID
        const baseURL = providerFor(providerID)?.baseURL ?? sessionFor(input.sessionID)?.baseURL
        if (!isLmStudio(providerID, baseURL)) return
        const res = await tray.call<{ system: string[] }>("/v1/transform/system", { model: input.model.api?.id ?? input.model.id, base_url: baseURL }, TRANSFORM_TIMEOUT_MS)
        for (const line of res.system ?? []) if (line) output.system.push(line)
      } catch {
        // the tray's context is optional
      }
    },

    "experimental.chat.messages.transform": async (_input, output) => {
      try {
        const messages = output.messages
        const last = [...messages].reverse().find((m) => m.info.role === "user")
        if (!last || last.info.role !== "user") return
        const { providerID, modelID } = last.info.model
        const baseURL = providerFor(providerID)?.baseURL ?? sessionFor(last.info.sessionID)?.baseURL
        if (!isLmStudio(providerID, baseURL)) return
        // this runs before chat.params, so on a session's first request only the config knows the limit
        const contextLimit = sessionFor(last.info.sessionID)?.contextLimit ?? providerFor(providerID)?.contexts[modelID]
        const digests = messages.map((m) => {
          let chars = 0
          for (const part of m.parts) {
            const rec = part as unknown as Json
            chars += (str(rec.text)?.length ?? 0) + (rec.type === "tool" ? JSON.stringify(rec.state ?? "").length : 0)
          }
          return { id: m.info.id, role: m.info.role, tokens: Math.ceil(chars / 3.5) + 4 }
        })
        const res = await tray.call<{ keep: string[]; dropped: string[] }>(
          "/v1/transform/messages",
          { model: modelID, base_url: baseURL, context_limit: contextLimit, messages: digests },
          TRANSFORM_TIMEOUT_MS,
        )
        if (!res.dropped?.length) return
        const keep = new Set(res.keep)
        const kept = messages.filter((m) => keep.has(m.info.id))
        messages.splice(0, messages.length, ...kept)
        log("info", `dropped ${res.dropped.length} old messages to fit the loaded context window`)
      } catch {
        // trimming is a safety net; without it OpenCode's own compaction still applies
      }
    },

    "experimental.session.compacting": async (input, output) => {
      try {
        const s = sessionFor(input.sessionID)
        if (!s || !isLmStudio(s.providerID, s.baseURL)) return
        const res = await tray.call<{ context: string[] }>("/v1/compaction", { session_id: input.sessionID, model: s.model, base_url: s.baseURL }, TRANSFORM_TIMEOUT_MS)
        for (const line of res.context ?? []) if (line) output.context.push(line)
      } catch {
        // compaction works without our notes
      }
    },

    "experimental.text.complete": async (input, output) => {
      try {
        const s = sessionFor(input.sessionID)
        if (!s || !isLmStudio(s.providerID, s.baseURL) || !output.text) return
        const res = await tray.call<{ text: string; changed: boolean }>("/v1/text-complete", { model: s.model, base_url: s.baseURL, text: output.text }, TRANSFORM_TIMEOUT_MS)
        if (res.changed && typeof res.text === "string") output.text = res.text
      } catch {
        // keep the text as the model wrote it
      }
    },

    "tool.definition": async (input, output) => {
      const required = requiredByTool.get(input.toolID)
      if (!required) return
      // OpenCode marks every plain-JSON-Schema arg as required; optional ones must say so explicitly.
      const out = output as unknown as { jsonSchema?: Json }
      const schema = asRecord(out.jsonSchema)
      if (schema) out.jsonSchema = { ...schema, required }
    },

    // Plain JSON Schema args (not zod) are what OpenCode 1.18.33 accepts from a plugin without the zod
    // dependency; the typed API only describes zod shapes, hence the cast.
    tool: tools as unknown as Hooks["tool"],
  }
}

export default LMStudioTrayPlugin
