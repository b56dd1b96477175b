package bpf

// The objects and their Go bindings are generated from xdp.c (the
// prefilter) and media.c (the media fast path) and committed, so building
// sipwall never needs clang. Regenerate after changing either (needs clang
// and the libbpf headers):
//
//	go generate ./bpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target bpfel -type sw_config -type sw_limit -type sw_lpm_key -type sw_ban_key -type sw_addr -type sw_source -type sw_window xdp xdp.c -- -O2 -g -Wall -Werror $BPF_CFLAGS
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target bpfel -type sw_addr -type sw_media_key -type sw_media_route -type sw_media_stats -type sw_media_config media media.c -- -O2 -g -Wall -Werror $BPF_CFLAGS
