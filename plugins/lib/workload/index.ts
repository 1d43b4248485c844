// What the workload attestors (unix, windows) share, platform-neutral: the executable hasher and its cache. Each
// attestor supplies the wording of file errors in its built-in's platform (Go's *os.PathError texts differ by OS).
export * from './hasher';
