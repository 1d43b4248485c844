export { startInProcess, type InProcessOptions, type InProcessPlugin } from './in-process';
export { spawnPlugin, checkHclogLine, parseHandshake, SpawnedPlugin, type SpawnOptions, type Handshake } from './spawn';
export { HostConnection, FakeHostServices, hostServiceNamesFor, unary, type MetricsCall } from './host';
