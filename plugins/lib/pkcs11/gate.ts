/**
 * Readers/writer gate. Every PKCS#11 operation holds it shared; a full re-initialisation (C_Finalize + C_Initialize)
 * holds it exclusively, so no async worker is running inside the module while it is finalised (PKCS#11 v2.40 §5.4.2:
 * C_Finalize is undefined while other threads are making Cryptoki calls). Writers are preferred: once a writer waits,
 * new readers queue behind it, so a drain always completes.
 */
export class RwGate {
  private readers = 0;
  private writer = false;
  private readonly waitingWriters: Array<() => void> = [];
  private readonly waitingReaders: Array<() => void> = [];

  get activeReaders(): number {
    return this.readers;
  }

  async shared<T>(f: () => Promise<T>): Promise<T> {
    await this.acquireShared();
    try {
      return await f();
    } finally {
      this.releaseShared();
    }
  }

  async exclusive<T>(f: () => Promise<T>): Promise<T> {
    await this.acquireExclusive();
    try {
      return await f();
    } finally {
      this.releaseExclusive();
    }
  }

  private acquireShared(): Promise<void> {
    if (!this.writer && this.waitingWriters.length === 0) {
      this.readers++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.waitingReaders.push(() => {
        this.readers++;
        resolve();
      }),
    );
  }

  private releaseShared(): void {
    this.readers--;
    if (this.readers === 0 && this.waitingWriters.length > 0) {
      this.writer = true;
      this.waitingWriters.shift()!();
    }
  }

  private acquireExclusive(): Promise<void> {
    if (!this.writer && this.readers === 0) {
      this.writer = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waitingWriters.push(resolve));
  }

  private releaseExclusive(): void {
    this.writer = false;
    if (this.waitingWriters.length > 0) {
      this.writer = true;
      this.waitingWriters.shift()!();
      return;
    }
    const rs = this.waitingReaders.splice(0);
    for (const r of rs) r();
  }
}
