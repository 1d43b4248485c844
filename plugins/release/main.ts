#!/usr/bin/env node
// The release build's one entry (bundled by scripts/package.mjs into the single executable and the npm package).
import { runRelease } from './dispatch';

runRelease();
