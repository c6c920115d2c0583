// Types of eventsproxy-client (index.js).

/** One (exchange, routing-key pattern) pair, as the connect endpoint takes it. */
export interface Binding {
  exchange: string;
  routingKeyPattern: string;
}

/** The data of a `message` event. */
export interface Message {
  exchange: string;
  routingKey: string;
  redelivered: boolean;
  /** The CC header's `route.` entries, without that prefix. */
  routes: string[];
  /** The body as JSON, or as a string when it is not JSON. */
  payload: unknown;
  /** With `properties: true`: the AMQP properties that are set. */
  properties?: MessageProperties;
  /**
   * With `properties: true`: the headers table (CC among them). Byte
   * arrays are base64 strings, timestamps RFC 3339 strings, decimals numbers.
   */
  headers?: Record<string, unknown>;
  /** With `properties: true`: present when the headers were cut to the server's bounds. */
  headersTruncated?: true;
}

/** A message's AMQP basic properties; those not set are absent. */
export interface MessageProperties {
  contentType?: string;
  contentEncoding?: string;
  /** 1 transient, 2 persistent. */
  deliveryMode?: number;
  priority?: number;
  correlationId?: string;
  replyTo?: string;
  expiration?: string;
  messageId?: string;
  /** RFC 3339, UTC. */
  timestamp?: string;
  type?: string;
  userId?: string;
  appId?: string;
}

/**
 * Messages may be missing here. `reason` is the server's word (`broker`,
 * `expired`, `bindings`, ...) or, with `local: true`, the client's own:
 * `reconnect` (the stream was re-established without resume) or `rebind`
 * (the stream was re-opened to add a binding). A page should refetch the
 * state it shows.
 */
export interface Gap {
  reason: string;
  local?: boolean;
}

/** The server dropped `dropped` messages for this stream: the page read too slowly. */
export interface Overflow {
  dropped: number;
}

/**
 * The server's `error` event (or a refusal such as 401/403 on the fetch
 * transport). `terminal: true`: the request itself is wrong and is not
 * retried until the bindings change; `false`: the client reconnects.
 */
export interface ServerError {
  message: string;
  status?: number;
  terminal: boolean;
}

/**
 * `idle` (no bindings), `connecting`, `open` (200, bindings being placed),
 * `ready`, `retrying` (waiting to reconnect after a failure), `failed` (the
 * server refused the request), `closed` (close(), or the server answered 204).
 */
export type State = 'idle' | 'connecting' | 'open' | 'ready' | 'retrying' | 'failed' | 'closed';

export interface StateDetail {
  state: State;
  /** With `retrying`: the HTTP status of a refusal, if there was one. */
  status?: number;
  /** With `retrying`: what failed (`connection failed`, or the server's text). */
  error?: string;
  /** With `retrying`: milliseconds until the next attempt. */
  retryIn?: number;
  /** With `failed`: the server's text. */
  message?: string;
}

export interface Options {
  /**
   * The service's root URL. Default: where this module was served from
   * (…/api/events/v1/client.js), else the page's location.
   */
  rootUrl?: string | URL;
  /** Ask the server for resumable streams (`resume=1`): reconnections continue where they left off, or say `gap`. */
  resume?: boolean;
  /**
   * Ask for each message's AMQP properties and headers (`properties=1`):
   * `Message.properties` and `Message.headers`. Tabs that share a stream
   * should agree on it: the leader's choice holds.
   */
  properties?: boolean;
  /**
   * Share one stream among every tab of this origin that passes the same
   * name (`true` means `"default"`), through Web Locks and BroadcastChannel.
   * Without those in the browser, each tab has its own stream.
   */
  share?: boolean | string;
  /** A bearer token, or a function returning one for each connection; implies the fetch transport. */
  token?: string | (() => string | Promise<string>);
  /** `eventsource` (the default without a token) or `fetch`. */
  transport?: 'eventsource' | 'fetch';
  /** Send cookies with cross-origin requests. */
  withCredentials?: boolean;
  /** Reconnection delays in milliseconds, doubling from `initial` to `max`, with jitter. Default 1000 and 30000. */
  backoff?: { initial?: number; max?: number };
  /** An EventSource constructor to use instead of the global one. */
  EventSource?: typeof EventSource;
  /** A fetch function to use instead of the global one. */
  fetch?: typeof fetch;
}

/** What a subscription's owner is told; every member is optional. */
export interface Handlers {
  /** Each message that this subscription's binding matches. */
  message?(msg: Message, sub: Subscription): void;
  /** The binding is in place: nothing published from now on is missed. Called again after each reconnection. */
  ready?(sub: Subscription): void;
  gap?(gap: Gap, sub: Subscription): void;
  overflow?(overflow: Overflow, sub: Subscription): void;
  error?(error: ServerError, sub: Subscription): void;
}

export interface Subscription {
  readonly binding: Binding;
  /** Resolves the first time the binding is in place. */
  readonly ready: Promise<void>;
  /** Stops this subscription's callbacks; the stream drops the binding when it next reconnects. */
  unsubscribe(): void;
}

export interface EventsClientEventMap {
  state: CustomEvent<StateDetail>;
  ready: CustomEvent<{}>;
  message: CustomEvent<Message>;
  ping: CustomEvent<{ time: string }>;
  gap: CustomEvent<Gap>;
  overflow: CustomEvent<Overflow>;
  error: CustomEvent<ServerError>;
}

/**
 * One stream for all of a page's bindings (or, with `share`, for all of a
 * browser's tabs), dispatching each message to the subscriptions it matches.
 */
export class EventsClient extends EventTarget {
  constructor(options?: Options);
  readonly state: State;
  /**
   * Adds a binding. Subscriptions made in the same task share one
   * (re)connection. A handler function alone is the `message` handler.
   */
  subscribe(binding: Binding, handlers?: Handlers | ((msg: Message, sub: Subscription) => void)): Subscription;
  /** The distinct bindings of this page's subscriptions. */
  bindings(): Binding[];
  /** Ends the stream (or leaves the shared one) for good. */
  close(): void;
  addEventListener<K extends keyof EventsClientEventMap>(
    type: K,
    listener: (ev: EventsClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof EventsClientEventMap>(
    type: K,
    listener: (ev: EventsClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** Whether a RabbitMQ topic pattern matches a routing key (`*` one word, `#` zero or more). */
export function topicMatch(pattern: string, routingKey: string): boolean;

/** Whether a `message` event's data belongs to a binding: same exchange, and the pattern matches the routing key or a CC route. */
export function messageMatches(binding: Binding, msg: Pick<Message, 'exchange' | 'routingKey' | 'routes'>): boolean;

/** The fetch transport's event-stream parser. */
export class SSEParser {
  constructor(onEvent: (ev: { kind: string; data: string; lastEventId: string }) => void);
  push(text: string): void;
  lastEventId: string;
  retry: number | undefined;
}
