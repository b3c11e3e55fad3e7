// Types for herald.js, Herald's browser client.

export type CloseAction = "resume" | "refresh-token" | "stop";
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** What to do after the server closed the connection with `code` (PROTOCOL.md, close codes). */
export function closeAction(code: number): CloseAction;
/** Full-jitter exponential backoff, in milliseconds. */
export function backoffDelay(attempt: number, options?: { base?: number; cap?: number; random?: () => number }): number;
/** `u:1842,*:78,c:news:13` from `{ u: 1842, "*": 78, "c:news": 13 }`. */
export function cursorText(positions: Record<string, number>): string;
/** The token's `exp` in Unix milliseconds, unverified; null without one. */
export function tokenExpiry(token: string): number | null;
/** How long before `exp` the client refreshes: half the time left, 1 to 60 s. */
export function refreshLead(remainingMs: number): number;
/** The token's `sub` and `device` claims, unverified. */
export function tokenIdentity(token: string): { user: string; device: string };

export interface CursorStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export class CursorStore {
  constructor(storage?: CursorStorage | null);
  static defaultStorage(): CursorStorage | null;
  load(key: string): { epoch: string; positions: Record<string, number> } | null;
  save(key: string, epoch: string, positions: Record<string, number>): void;
  clear(key: string): void;
}

export interface HeraldOptions {
  /**
   * A token, or a function returning one: asked before every connection attempt, and shortly before
   * the current token's `exp`, whose answer is sent in a `refresh` so the connection stays open.
   */
  token?: string | (() => string | Promise<string>);
  /** Connect without a token: only channels of namespaces open to anonymous connections. */
  anonymous?: boolean;
  /** Channels to subscribe to at connect (the token must grant them). */
  channels?: string[];
  /** Reconnect even after 4001 (replaced) or 4003 (kicked). Default: false. */
  reconnectAfterStop?: boolean;
  /** Backoff base and cap in milliseconds. Defaults: 500 and 30,000. */
  backoffBase?: number;
  backoffCap?: number;
  /**
   * Milliseconds between acks: the client acks the last message of each stream at most this often,
   * so the node commits the device's position (a token with a `device` claim then resumes from it
   * without a stored cursor). 0: no automatic acks. Default: 1,000.
   */
  ackInterval?: number;
  /** Where cursors live. Default: localStorage when available, else memory. */
  storage?: CursorStorage | null;
  cursorStore?: CursorStore;
  /** The cursor's storage key. Default: per host, user and device. */
  storageKey?: string;
  /**
   * `"auto"` (default): each attempt tries a WebSocket and, if it fails before it opens, Server-Sent
   * Events on /v1/sse at once. `"websocket"` or `"sse"`: that one only. An event stream only receives.
   */
  transport?: "auto" | "websocket" | "sse";
  /** For tests: WebSocket and EventSource constructors, a timer and a random source. */
  WebSocket?: typeof WebSocket;
  EventSource?: typeof EventSource;
  setTimeout?: (callback: () => void, milliseconds: number) => unknown;
  random?: () => number;
}

export interface HeraldMessage {
  stream: string;
  offset: number;
  id?: string;
  data: unknown;
  encoding?: "base64";
  /** Who published it into its channel (`herald-user`), when a signed-in client did. */
  user?: string;
}

/** A `history` answer (docs/protocol.md §7): the newest messages before `end`, oldest first. */
export interface HeraldHistory {
  stream: string;
  messages: HeraldMessage[];
  /** The oldest offset the stream's partition still holds. */
  earliest: number;
  /** The exclusive bound that was read. */
  end: number;
  /** The `before` of the page before this one; null once the read reached `earliest`. */
  next: number | null;
  /** Older messages may have been removed by retention. */
  expired: boolean;
  /** The bound that cut the answer, and its value (null when none did). */
  cut: "count" | "bytes" | "scan" | null;
  limit: number | null;
}

/** Why `history()` rejected: the node's error code, or `not-connected` / `closed`. */
export interface HeraldHistoryError extends Error {
  code: "channel-not-allowed" | "history-not-offered" | "busy" | "unavailable" | "bad-request" | "unsupported" | "not-connected" | "closed" | string;
}

export interface HeraldWelcome {
  type: "welcome";
  node: string;
  session: string;
  epoch: string;
  positions: Record<string, number>;
  recovered?: boolean;
  reason?: "expired" | "ahead" | "epoch" | "too-many" | "malformed";
  /** "stored-cursor": the node resumed from the device's committed cursor (the client sent none). */
  source?: "stored-cursor";
}

export interface HeraldEventMap {
  state: CustomEvent<{ state: ConnectionState }>;
  welcome: CustomEvent<HeraldWelcome>;
  message: CustomEvent<HeraldMessage>;
  resync: CustomEvent<{ reason: string }>;
  /** With `id`: the error is about the publish sent with that id (send it again with the same id). */
  error: CustomEvent<{ code: string; message: string; id?: string }>;
  /** Kafka took the publish sent with `id`; with `sync`, its copy's position in the user's stream. */
  published: CustomEvent<{ id: string; stream?: string; offset?: number }>;
  /** The node took the refreshed token: the connection now expires at `expiresAt` (Unix ms). */
  refreshed: CustomEvent<{ expiresAt: number }>;
  close: CustomEvent<{ code: number; reason: string; action: CloseAction }>;
  /** An attempt uses another transport than the one before. */
  transport: CustomEvent<{ transport: "websocket" | "sse" }>;
}

export class HeraldConnection extends EventTarget {
  constructor(url: string, options: HeraldOptions);
  readonly state: ConnectionState;
  readonly positions: Record<string, number>;
  readonly epoch: string | null;
  /** The transport of the current (or last) attempt. */
  readonly transport: "websocket" | "sse";
  open(): this;
  close(): void;
  /** `publish`, `subscribe`, `unsubscribe` and `ack` return false over an event stream (receive only).
   *  With `channel`: into that channel (where its namespace allows it), `sync` does not apply. */
  publish(data: unknown, options?: { sync?: boolean; id?: string; channel?: string }): boolean;
  subscribe(channel: string, options?: { offset?: number }): boolean;
  unsubscribe(channel: string): boolean;
  ack(stream: string, offset: number): boolean;
  /** The last `limit` (50) messages of `u`, `*` or `c:NAME` before `before`; rejects with a HeraldHistoryError. */
  history(stream: string, options?: { limit?: number; before?: number }): Promise<HeraldHistory>;
  connectionURL(token: string): string;
  addEventListener<K extends keyof HeraldEventMap>(type: K, listener: (event: HeraldEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  /** `message:STREAM`: the messages of one stream, e.g. `message:u` or `message:c:news`. */
  addEventListener(type: `message:${string}`, listener: (event: CustomEvent<HeraldMessage>) => void, options?: boolean | AddEventListenerOptions): void;
}

export function connect(url: string, options: HeraldOptions): HeraldConnection;
