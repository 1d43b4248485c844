export {
  ChainError,
  ChainErrorReason,
  ChainProfile,
  VerifyChainInput,
  VerifiedChains,
  verifyChain,
  sha1Hex,
  parsePemCertificates,
  commonName,
  spkiEqual,
  certificatePublicKey,
  ekTpmInfo,
} from './chain';
