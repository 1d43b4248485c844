// A minimal PKCS#11 KeyManager in Go, served as an EXTERNAL plugin with spire-plugin-sdk: EC P-256/P-384 keys as
// token objects, SignData with CKM_ECDSA on a pool of logged-in sessions (github.com/miekg/pkcs11, cgo). Not a
// product: bench/pkcs11/spire-mint.ts (BENCH_GO_EXTERNAL=1) runs it next to our TypeScript `pkcs11` KeyManager on the
// same SoftHSM token, as the floor for a PKCS#11 KeyManager behind SPIRE's plugin boundary: Go's gRPC and cgo instead
// of Node's event loop and a signing thread. No recovery, no key reload, no RSA: what the benchmark needs and no more.
// Built by bench/build-go-external.sh into $HOME/.cache/spire-hw/bench-pkcs11-go-pkcs11.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"strings"
	"sync"

	"github.com/hashicorp/hcl"
	"github.com/miekg/pkcs11"
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type config struct {
	ModulePath  string `hcl:"module_path"`
	TokenLabel  string `hcl:"token_label"`
	Pin         string `hcl:"pin"`
	MaxSessions int    `hcl:"max_sessions"`
}

type key struct {
	pub    *keymanagerv1.PublicKey
	handle pkcs11.ObjectHandle
	order  int // bytes of the curve order: the length of r and of s
}

type plugin struct {
	keymanagerv1.UnimplementedKeyManagerServer
	configv1.UnimplementedConfigServer

	mu       sync.RWMutex
	ctx      *pkcs11.Ctx
	anchor   pkcs11.SessionHandle
	sessions chan pkcs11.SessionHandle
	keys     map[string]*key
}

// Curve OIDs (DER) for CKA_EC_PARAMS.
var (
	oidP256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	oidP384 = []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}
)

func (p *plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	var c config
	if err := hcl.Decode(&c, req.HclConfiguration); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "config: %v", err)
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 8
	}
	ctx := pkcs11.New(c.ModulePath)
	if ctx == nil {
		return nil, status.Errorf(codes.InvalidArgument, "cannot load %s", c.ModulePath)
	}
	if err := ctx.Initialize(); err != nil {
		return nil, status.Errorf(codes.Internal, "C_Initialize: %v", err)
	}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "C_GetSlotList: %v", err)
	}
	var slot uint
	found := false
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err == nil && strings.TrimRight(ti.Label, " ") == c.TokenLabel {
			slot, found = s, true
			break
		}
	}
	if !found {
		return nil, status.Errorf(codes.FailedPrecondition, "token %q not found", c.TokenLabel)
	}
	open := func() (pkcs11.SessionHandle, error) {
		return ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	}
	anchor, err := open()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "C_OpenSession: %v", err)
	}
	if err := ctx.Login(anchor, pkcs11.CKU_USER, c.Pin); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "C_Login: %v", err)
	}
	sessions := make(chan pkcs11.SessionHandle, c.MaxSessions)
	for i := 0; i < c.MaxSessions; i++ {
		s, err := open()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "C_OpenSession: %v", err)
		}
		sessions <- s
	}
	p.mu.Lock()
	p.ctx, p.anchor, p.sessions, p.keys = ctx, anchor, sessions, map[string]*key{}
	p.mu.Unlock()
	return &configv1.ConfigureResponse{}, nil
}

func (p *plugin) GenerateKey(_ context.Context, req *keymanagerv1.GenerateKeyRequest) (*keymanagerv1.GenerateKeyResponse, error) {
	var params []byte
	var curve elliptic.Curve
	switch req.KeyType {
	case keymanagerv1.KeyType_EC_P256:
		params, curve = oidP256, elliptic.P256()
	case keymanagerv1.KeyType_EC_P384:
		params, curve = oidP384, elliptic.P384()
	default:
		return nil, status.Errorf(codes.InvalidArgument, "key type %v not supported by this bench plugin", req.KeyType)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	label := "go-bench/" + req.KeyId
	pubH, privH, err := p.ctx.GenerateKeyPair(p.anchor, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "C_GenerateKeyPair: %v", err)
	}
	attrs, err := p.ctx.GetAttributeValue(p.anchor, pubH, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "C_GetAttributeValue: %v", err)
	}
	var point []byte // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point
	if _, err := asn1.Unmarshal(attrs[0].Value, &point); err != nil {
		return nil, status.Errorf(codes.Internal, "CKA_EC_POINT: %v", err)
	}
	x, y := elliptic.Unmarshal(curve, point) //nolint:staticcheck // an uncompressed point from the token
	if x == nil {
		return nil, status.Error(codes.Internal, "CKA_EC_POINT: not an uncompressed point")
	}
	pkix, err := x509.MarshalPKIXPublicKey(&ecdsa.PublicKey{Curve: curve, X: x, Y: y})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "public key: %v", err)
	}
	sum := sha256.Sum256(pkix)
	k := &key{
		pub:    &keymanagerv1.PublicKey{Id: req.KeyId, Type: req.KeyType, PkixData: pkix, Fingerprint: hex.EncodeToString(sum[:])},
		handle: privH,
		order:  (curve.Params().BitSize + 7) / 8,
	}
	p.keys[req.KeyId] = k
	return &keymanagerv1.GenerateKeyResponse{PublicKey: k.pub}, nil
}

func (p *plugin) GetPublicKey(_ context.Context, req *keymanagerv1.GetPublicKeyRequest) (*keymanagerv1.GetPublicKeyResponse, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if k, ok := p.keys[req.KeyId]; ok {
		return &keymanagerv1.GetPublicKeyResponse{PublicKey: k.pub}, nil
	}
	return &keymanagerv1.GetPublicKeyResponse{}, nil
}

func (p *plugin) GetPublicKeys(context.Context, *keymanagerv1.GetPublicKeysRequest) (*keymanagerv1.GetPublicKeysResponse, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]*keymanagerv1.PublicKey, 0, len(p.keys))
	for _, k := range p.keys {
		out = append(out, k.pub)
	}
	return &keymanagerv1.GetPublicKeysResponse{PublicKeys: out}, nil
}

func (p *plugin) SignData(_ context.Context, req *keymanagerv1.SignDataRequest) (*keymanagerv1.SignDataResponse, error) {
	p.mu.RLock()
	k, ok := p.keys[req.KeyId]
	ctx, sessions := p.ctx, p.sessions
	p.mu.RUnlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no such key %q", req.KeyId)
	}
	data := req.Data
	if len(data) > k.order {
		data = data[:k.order]
	}
	s := <-sessions
	defer func() { sessions <- s }()
	if err := ctx.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, k.handle); err != nil {
		return nil, status.Errorf(codes.Internal, "C_SignInit: %v", err)
	}
	raw, err := ctx.Sign(s, data)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "C_Sign: %v", err)
	}
	if len(raw) != 2*k.order {
		return nil, status.Errorf(codes.Internal, "C_Sign: %d bytes, want %d", len(raw), 2*k.order)
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:k.order]), new(big.Int).SetBytes(raw[k.order:])})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "signature: %v", err)
	}
	return &keymanagerv1.SignDataResponse{Signature: der, KeyFingerprint: k.pub.Fingerprint}, nil
}

func main() {
	p := &plugin{}
	pluginmain.Serve(keymanagerv1.KeyManagerPluginServer(p), configv1.ConfigServiceServer(p))
}
