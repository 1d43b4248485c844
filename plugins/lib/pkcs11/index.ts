export * from './errors';
export * from './gate';
export * from './module';
export * from './uri';
export * from './pin';
export * from './pool';
export * from './token';
export * from './client';
