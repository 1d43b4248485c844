/** Plugin configuration: HCL v1 / JSON parsing and the typed config builder. */
export { HclSyntaxError, type HclErrorReason, type HclTokenKind, parseConfigText, MAX_NESTING } from './hcl';
export { type ConfigValue, type ConfigObject, type SourcePos, positionOf, numberSourceText, isRepeated } from './tree';
export {
  type ConfigStatus,
  type FieldSpec,
  type Schema,
  type Infer,
  type DecodeOptions,
  type StringOpts,
  type IntOpts,
  type BoolOpts,
  type DurationOpts,
  type StringListOpts,
  type StringMapOpts,
  type ObjectOpts,
  type ObjectListOpts,
  field,
  decodeConfig,
  decodeConfigObject,
  redactConfig,
  coreTrustDomain,
  trustDomainProblem,
  parseGoInt,
  parseGoDuration,
} from './build';
export { registerConfigSecrets, scanSecretValues, looksSecretKey, secretKeyNames } from './secrets';
