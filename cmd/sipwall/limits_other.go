//go:build !unix

package main

import (
	"log/slog"

	"github.com/sipwall/sipwall/sbc/config"
)

// checkDescriptors: no descriptor limit to raise or check here.
func checkDescriptors(*config.Config, *slog.Logger) {}
