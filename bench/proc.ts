// CPU accounting for the benchmarks, from /proc (Linux): a process's own utime+stime, and the same per thread,
// grouped by a caller-chosen key (e.g. main thread / signing threads / the rest).
import * as fs from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ

/** `comm` and utime+stime (seconds) from the text of a /proc stat file. */
function parseStat(stat: string): { comm: string; seconds: number } {
  const close = stat.lastIndexOf(')');
  const rest = stat.slice(close + 2).split(' ');
  return {
    comm: stat.slice(stat.indexOf('(') + 1, close),
    seconds: (Number(rest[11]) + Number(rest[12])) / TICKS_PER_SECOND,
  };
}

/** utime+stime of a process in seconds; NaN when it is unknown or gone. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    return parseStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')).seconds;
  } catch {
    return NaN;
  }
}

/**
 * CPU seconds of a process's threads, summed per `group(isMainThread, comm)`. Threads that exit while being read are
 * skipped; an unknown or gone process gives an empty map.
 */
export function threadCpu(
  pid: number | undefined,
  group: (isMain: boolean, comm: string) => string,
): Map<string, number> {
  const out = new Map<string, number>();
  if (pid === undefined) return out;
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const { comm, seconds } = parseStat(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      const key = group(tid === String(pid), comm);
      out.set(key, (out.get(key) ?? 0) + seconds);
    } catch {
      /* thread gone */
    }
  }
  return out;
}
