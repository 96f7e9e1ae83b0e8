; RelayDesk installer for Windows, from a bundle built ON WINDOWS with PyInstaller
; (docs/packaging.md). makensis runs on Windows or Linux:
;
;   makensis -DVERSION=0.1.0 -DBUNDLE=dist\relaydesk -DICON=build\relaydesk.ico ^
;            -DOUTFILE=dist\RelayDesk-0.1.0-setup.exe packaging\windows\relaydesk.nsi
;
; Installs for all users into Program Files\RelayDesk, with a Start menu entry, an
; uninstaller and an Add/Remove Programs entry. The operators' data (database, logs,
; settings) lives in their own profile and is left alone by the uninstaller.

Unicode true
!include "MUI2.nsh"

!ifndef VERSION
  !error "pass -DVERSION=x.y.z (engine.__version__)"
!endif
!ifndef BUNDLE
  !error "pass -DBUNDLE=path\to\dist\relaydesk (the PyInstaller bundle built on Windows)"
!endif
!ifndef ICON
  !error "pass -DICON=path\to\relaydesk.ico (python packaging\icons.py --ico FILE)"
!endif
!ifndef OUTFILE
  !define OUTFILE "RelayDesk-${VERSION}-setup.exe"
!endif

!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\RelayDesk"
!define APP_PATHS_KEY "Software\Microsoft\Windows\CurrentVersion\App Paths\relaydesk.exe"

Name "RelayDesk ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\RelayDesk"
InstallDirRegKey HKLM "${UNINSTALL_KEY}" "InstallLocation"
RequestExecutionLevel admin
SetCompressor /SOLID lzma
BrandingText "RelayDesk ${VERSION}"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\relaydesk.exe"
!define MUI_FINISHPAGE_RUN_PARAMETERS "gui"

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "RelayDesk"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "RelayDesk installer"
VIAddVersionKey "LegalCopyright" "MIT licence"

Section "RelayDesk" SecMain
  SectionIn RO
  SetShellVarContext all
  SetOutPath "$INSTDIR"
  ; An upgrade replaces the whole bundle: files of the old version must not linger.
  RMDir /r "$INSTDIR\_internal"
  File /r "${BUNDLE}\*"
  File "/oname=relaydesk.ico" "${ICON}"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  ; One executable is the console and the command line; the shortcut opens the console.
  ; It is a console program (the CLI needs one), so Windows shows a console window
  ; beside the console's window: started minimised to keep it out of the way.
  CreateShortCut "$SMPROGRAMS\RelayDesk.lnk" "$INSTDIR\relaydesk.exe" "gui" \
      "$INSTDIR\relaydesk.ico" 0 SW_SHOWMINIMIZED "" "RelayDesk SMS campaign console"

  ; "relaydesk" from the Run dialog (Win+R) and Start search.
  WriteRegStr HKLM "${APP_PATHS_KEY}" "" "$INSTDIR\relaydesk.exe"
  WriteRegStr HKLM "${APP_PATHS_KEY}" "Path" "$INSTDIR"

  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayName" "RelayDesk"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "Publisher" "RelayDesk"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\relaydesk.ico"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  SetShellVarContext all
  ; Files of a running RelayDesk (console, workers, its Redis) cannot be deleted: the
  ; operator closes the console and stops the workers first (docs/packaging.md).
  Delete "$SMPROGRAMS\RelayDesk.lnk"
  ; Only what the installer put there: never a recursive delete of $INSTDIR itself,
  ; which an operator may have pointed at a folder holding other files.
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\relaydesk.exe"
  Delete "$INSTDIR\relaydesk.ico"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKLM "${APP_PATHS_KEY}"
  DeleteRegKey HKLM "${UNINSTALL_KEY}"
SectionEnd
