// DevID on a TPM: what both the tpm_devid agent plugin and the spire-tpm-devid tool need (device location, key blob
// formats, the TPM command sequences, errors in words), and the tpm_devid wire format shared by the agent and server.
export * from './wire';
export * from './device';
export * from './blobs';
export * from './devid-tpm';
export * from './tpm-errors';
export * from './idevid';
export * from './reachability';
