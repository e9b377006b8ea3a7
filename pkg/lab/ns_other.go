//go:build !linux

package lab

import (
	"errors"
	"os/exec"
	"syscall"
)

func platformCheck() error { return errors.ErrUnsupported }

func doInNamespace(path string, fn func() error) error { return errors.ErrUnsupported }

func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func startCmd(cmd *exec.Cmd) error { return errors.ErrUnsupported }
